# The gloo headers from Debian bookworm's libgloo-dev (nix/debs.nix), unpacked with dpkg-deb:
# $out/include/gloo/config.h, the directory build.rs takes from NANOCHAT_GLOO_INCLUDE. Headers only: the
# c10d shim uses gloo's types through libtorch's ProcessGroupGloo, whose code is inside libtorch_cpu.so,
# so nothing links against Debian's libgloo.
{ stdenvNoCC, fetchurl, dpkg }:

let
  deb = (import ./debs.nix)."libgloo-dev";
in
stdenvNoCC.mkDerivation {
  pname = "gloo-headers";
  version = deb.version;

  src = fetchurl { inherit (deb) url sha256 name; };

  nativeBuildInputs = [ dpkg ];

  unpackPhase = ''
    runHook preUnpack
    dpkg-deb --extract "$src" deb
    runHook postUnpack
  '';

  installPhase = ''
    runHook preInstall
    mkdir -p "$out"
    cp -r deb/usr/include "$out/include"
    test -f "$out/include/gloo/config.h"
    runHook postInstall
  '';

  dontConfigure = true;
  dontBuild = true;
  dontFixup = true;
}
