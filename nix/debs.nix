# Debian packages the build takes files from. libgloo-dev: the gloo headers (gloo/config.h & co.) that
# libtorch's c10d headers include and the torch wheel does not ship; build.rs finds them through
# NANOCHAT_GLOO_INCLUDE. The same package `make setup` installs with apt (Debian 12 "bookworm", main).
# URL from `apt-get download --print-uris libgloo-dev`; sha256 computed on the downloaded .deb and equal to
# the SHA256 in bookworm's Packages index. `name` avoids the '%' and '~' of the file name, which a store
# path may not contain.
#
# Plain data on purpose (no function, no import): tests/nix_flake.rs reads it with
# `nix-instantiate --eval --strict --json nix/debs.nix`.
{
  "libgloo-dev" = {
    version = "0.0~git20220518.5b14351-3";
    url = "https://deb.debian.org/debian/pool/main/g/gloo/libgloo-dev_0.0%7egit20220518.5b14351-3_amd64.deb";
    sha256 = "80529c9fd8af452faf489e686b94bf87075965c40673803810c4f41634b1e299";
    name = "libgloo-dev_0.0-git20220518.5b14351-3_amd64.deb";
  };
}
