{
  description = "containix: run Nix closures as Kubernetes pods, with no container image";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
      version = (builtins.fromTOML (builtins.readFile ./Cargo.toml)).workspace.package.version;

      # One derivation builds every binary of the workspace from the committed Cargo.lock.
      containixFor = pkgs: pkgs.rustPlatform.buildRustPackage {
        pname = "containix";
        inherit version;
        src = pkgs.lib.cleanSource ./.;
        cargoLock.lockFile = ./Cargo.lock;
        cargoBuildFlags = [ "--workspace" "--bins" ];
        # The test suite needs a real node (nix-daemon, containerd, runc): see scripts/test.sh.
        doCheck = false;
        meta = {
          description = "Run Nix closures as Kubernetes pods, with no container image";
          license = pkgs.lib.licenses.asl20;
          mainProgram = "containix";
          platforms = pkgs.lib.platforms.linux;
        };
      };
    in
    {
      packages = forAllSystems (pkgs: rec {
        containix = containixFor pkgs;
        default = containix;
      });

      overlays.default = final: _prev: { containix = containixFor final; };

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          inputsFrom = [ (containixFor pkgs) ];
          packages = [ pkgs.cargo-fuzz pkgs.clippy pkgs.rustfmt pkgs.containerd pkgs.runc ];
        };
      });
    };
}
