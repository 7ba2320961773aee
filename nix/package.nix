# The containix workspace's binaries, built from the committed Cargo.lock:
# `containix` (the CLI), `containerd-shim-containix-v1` (the shim) and `containix-csi`.
# The build scripts compile their .proto files with protox (pure Rust), so no protoc is needed.
#
# With `runUnitTests = true` the derivation also runs the unit tests that need no node
# (containix-core's library and containix-cli's binary); the integration tests in tests/ need a
# real nix-daemon, containerd and runc and run outside Nix (scripts/test.sh).
{
  lib,
  rustPlatform,
  runc,
  runUnitTests ? false,
}:
let
  workspace = builtins.fromTOML (builtins.readFile ../Cargo.toml);
in
rustPlatform.buildRustPackage {
  pname = "containix";
  inherit (workspace.workspace.package) version;

  # Only what cargo reads: every workspace member's manifest and sources, plus the files unit
  # tests open (deploy/node/policy.toml) and the example flakes the testkit embeds.
  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../crates
      ../tests
      ../benches
      ../deploy
      ../examples
    ];
  };
  cargoLock.lockFile = ../Cargo.lock;

  cargoBuildFlags = [
    "--package"
    "containix-cli"
    "--package"
    "containix-shim"
    "--package"
    "containix-csi"
  ];

  doCheck = runUnitTests;
  cargoTestFlags = [
    "--package"
    "containix-core"
    "--package"
    "containix-cli"
    "--lib"
    "--bins"
  ];
  # One unit test compares with `runc spec`; it skips itself when runc is absent.
  nativeCheckInputs = [ runc ];

  meta = {
    description = "Run Nix closures as Kubernetes pods, with no container image";
    homepage = workspace.workspace.package.repository;
    license = lib.licenses.asl20;
    mainProgram = "containix";
    platforms = lib.platforms.linux;
  };
}
