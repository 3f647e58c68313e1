# The container image, as `docker load < result` gives it: nanochat:latest. The same contract as
# docker/Dockerfile (entrypoint, volume, environment, labels), built from store paths only, so the same
# commit gives the same bytes: every file has a fixed mtime, and `created` is fixed below.
# libtorch and the NVIDIA libraries come in through the binary's RUNPATH (they are in its closure).
{ dockerTools, nanochat, python3, cacert, tini, rev, torchVersion }:

dockerTools.buildLayeredImage {
  name = "nanochat";
  # A fixed tag (not the default, the output hash) so `docker run nanochat ...` finds it after a load.
  tag = "latest";
  # Fixed creation time (the Unix epoch, +1 s as dockerTools writes it): no build clock in the image.
  created = "1970-01-01T00:00:01Z";

  # python3: sandboxed execution of generated code (HumanEval); tini: PID 1 that forwards signals to the
  # whole process group and reaps the stage processes; cacert: HTTPS downloads.
  contents = [ nanochat python3 cacert tini ];

  extraCommands = ''
    mkdir -p tmp root/.cache/nanochat
    chmod 1777 tmp
  '';

  config = {
    Entrypoint = [ "tini" "-g" "--" "nanochat" ];
    Cmd = [ "--help" ];
    WorkingDir = "/root";
    Env = [
      "PATH=/bin"
      "HOME=/root"
      "NANOCHAT_BASE_DIR=/root/.cache/nanochat"
      "NVIDIA_VISIBLE_DEVICES=all"
      "NVIDIA_DRIVER_CAPABILITIES=compute,utility"
      "SSL_CERT_FILE=${cacert}/etc/ssl/certs/ca-bundle.crt"
      # The NVIDIA container toolkit mounts the host's libcuda/libnvidia-ml into /usr/lib64 (or
      # /usr/lib/x86_64-linux-gnu) and relies on ld.so.cache, which Nix's loader does not read.
      "LD_LIBRARY_PATH=/usr/lib64:/usr/lib/x86_64-linux-gnu"
    ];
    Volumes = { "/root/.cache/nanochat" = { }; };
    Labels = {
      "org.opencontainers.image.title" = "nanochat";
      "org.opencontainers.image.description" = "The nanochat LLM pipeline as one reproducible binary on libtorch";
      "org.opencontainers.image.version" = nanochat.version;
      "org.opencontainers.image.revision" = rev;
      "org.opencontainers.image.licenses" = "MIT";
      "org.nanochat.torch.version" = torchVersion;
    };
  };
}
