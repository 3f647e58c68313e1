# Bit-reproducible builds of the nanochat binary and its container image (DESIGN.md "Reproducibility").
#
#   nix build ./nix#nanochat   the binary: result/bin/nanochat (default package)
#   nix build ./nix#image      the image:  docker load < result   ->  nanochat:latest
#   nix develop ./nix          the toolchain and the env vars below; then `cargo build --release --locked`
#                              (not `make build`: the Makefile's LIBTORCH_USE_PYTORCH would override LIBTORCH)
#
# Run from the repository root of a git checkout: the flake sits in nix/ and builds the repository around
# it (../.), which Nix only sees through git, so new files must be `git add`ed first.
#
# Everything is pinned: nixpkgs by flake.lock, the crates by Cargo.lock, libtorch by the wheels of
# manifests/python/runtime.lock (nix/wheels.nix, same sha256); the gloo headers are the vendored ones of the
# source tree (src/dist/vendor/gloo), as in `make build`.
# tests/nix_flake.rs checks those pins against each other offline; it cannot build anything.
{
  description = "nanochat: bit-reproducible builds of the binary and its container image";

  # nixos-25.11. Its rustc and cargo build the crate (Cargo.toml's rust-version 1.89 or newer; asserted
  # below): no rust-overlay or fenix input, so flake.lock pins the compiler too.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";

  outputs = { self, nixpkgs }:
    let
      # The wheels are manylinux x86_64 builds.
      system = "x86_64-linux";
      lib = nixpkgs.lib;
      pkgs = import nixpkgs {
        inherit system;
        # The NVIDIA libraries in the torch wheels are redistributable but not free.
        config.allowUnfreePredicate = pkg: lib.getName pkg == "libtorch-wheels";
      };

      cargoToml = lib.importTOML ../Cargo.toml;
      # The commit the binary reports (--version, report header); "<rev>-dirty" for an uncommitted tree,
      # like build.rs's own git lookup, which cannot run in the sandbox (no .git there).
      rev = self.rev or self.dirtyRev or "dirty";

      libtorch = pkgs.callPackage ./libtorch.nix { };

      # What torch-sys and build.rs read. LIBTORCH: torch-sys takes include/ and lib/ from it (no Python);
      # its parent is the site-packages dir where build.rs finds nvidia/cu13/include and
      # nvidia/nccl/include.
      buildEnv = {
        LIBTORCH = "${libtorch}/${libtorch.sitePackages}/torch";
      };

      # The repository without build outputs, the Python venv, device results and this directory (so
      # editing the flake does not rebuild the binary).
      source = lib.cleanSourceWith {
        name = "nanochat-source";
        src = lib.cleanSource ../.;
        filter = path: _type:
          let
            relative = lib.removePrefix (toString ../. + "/") (toString path);
            top = builtins.head (lib.splitString "/" relative);
          in
          !(builtins.elem top [ "target" ".venv" "device" "nix" ]);
      };

      nanochat =
        assert lib.assertMsg (lib.versionAtLeast pkgs.rustc.version cargoToml.package.rust-version)
          "nixpkgs' rustc ${pkgs.rustc.version} is older than Cargo.toml's rust-version ${cargoToml.package.rust-version}";
        pkgs.rustPlatform.buildRustPackage {
          pname = "nanochat";
          version = cargoToml.package.version;
          src = source;
          cargoLock.lockFile = ../Cargo.lock;

          # build.rs and torch-sys compile their C++ with stdenv's g++; libtorch comes in through LIBTORCH.
          nativeBuildInputs = [ pkgs.addDriverRunpath ];
          env = buildEnv // { NANOCHAT_GIT_COMMIT = rev; };

          # The test suite needs the Python oracles of `make test-setup` (.venv: rustbpe, tiktoken, tokenizers,
          # pyarrow, torch) and runs multi-process Gloo jobs; CI runs it with `make test`, not here.
          doCheck = false;

          # The data and run manifests next to the binary, as in docker/Dockerfile (/opt/nanochat/manifests).
          postInstall = ''
            mkdir -p "$out/share/nanochat"
            cp -r manifests "$out/share/nanochat/manifests"
          '';
          # nvml-wrapper dlopens libnvidia-ml.so.1 from the driver: /run/opengl-driver/lib on NixOS.
          postFixup = ''
            addDriverRunpath "$out/bin/nanochat"
          '';

          passthru = { inherit libtorch; };

          meta = {
            description = cargoToml.package.description;
            license = lib.licenses.mit;
            mainProgram = "nanochat";
            platforms = [ system ];
          };
        };

      image = pkgs.callPackage ./image.nix {
        inherit nanochat rev;
        torchVersion = libtorch.torchVersion;
      };
    in
    {
      packages.${system} = {
        inherit nanochat image libtorch;
        default = nanochat;
      };

      devShells.${system}.default = pkgs.mkShell {
        packages = [ pkgs.rustc pkgs.cargo pkgs.clippy pkgs.rustfmt pkgs.python3 ];
        env = buildEnv;
      };
    };
}
