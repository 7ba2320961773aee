{
  description = "containix: run Nix closures as Kubernetes pods, with no container image";

  # nixos-25.11, not 25.05: the workspace needs rustc >= 1.88 (rust-version, let chains) and
  # 25.05 ships 1.86.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";

  outputs =
    { self, nixpkgs }:
    let
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      # One build of the workspace; the per-binary packages select from it.
      containixFor = pkgs: pkgs.callPackage ./nix/package.nix { };

      # A package holding one binary of the shared build, so `nix run` and `lib.getExe` find it.
      binaryOf =
        pkgs: containix: name: description:
        pkgs.runCommand "${name}-${containix.version}"
          {
            inherit (containix) version;
            meta = containix.meta // {
              inherit description;
              mainProgram = name;
            };
          }
          ''
            mkdir -p $out/bin
            ln -s ${containix}/bin/${name} $out/bin/${name}
          '';
    in
    {
      packages = forAllSystems (
        pkgs:
        let
          containix = containixFor pkgs;
        in
        {
          inherit containix;
          default = containix;
          containix-shim =
            binaryOf pkgs containix "containerd-shim-containix-v1"
              "containerd shim v2 that runs Nix closures as containers";
          containix-csi =
            binaryOf pkgs containix "containix-csi"
              "CSI node plugin that publishes a Nix closure as an ephemeral volume";
        }
      );

      overlays.default = final: _prev: { containix = containixFor final; };

      # The module builds containix with the system's nixpkgs; set services.containix.package to
      # self.packages.<system>.containix to use this flake's pinned build instead.
      nixosModules.containix = ./nix/module.nix;
      nixosModules.default = self.nixosModules.containix;

      # `nix fmt`: nixfmt over every .nix file (through treefmt).
      formatter = forAllSystems (pkgs: pkgs.nixfmt-tree);

      checks = forAllSystems (pkgs: {
        package = self.packages.${pkgs.stdenv.hostPlatform.system}.containix;
        # The package carries the shell completions and a manual page per command.
        installed-files =
          let
            containix = self.packages.${pkgs.stdenv.hostPlatform.system}.containix;
          in
          pkgs.runCommand "containix-installed-files" { } ''
            for file in \
              share/bash-completion/completions/containix.bash \
              share/zsh/site-functions/_containix \
              share/fish/vendor_completions.d/containix.fish \
              share/man/man1/containix.1.gz \
              share/man/man1/containix-resolve.1.gz \
              share/man/man1/containix-node-install.1.gz; do
              test -e ${containix}/$file || { echo "missing $file" >&2; exit 1; }
            done
            touch $out
          '';
        unit-tests = pkgs.callPackage ./nix/package.nix { runUnitTests = true; };
        vm = import ./nix/tests/vm.nix {
          inherit pkgs;
          module = self.nixosModules.default;
          containix = self.packages.${pkgs.stdenv.hostPlatform.system}.containix;
        };
      });

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          inputsFrom = [ (containixFor pkgs) ];
          packages = [
            pkgs.cargo-fuzz
            pkgs.clippy
            pkgs.rustfmt
            pkgs.containerd
            pkgs.runc
            pkgs.cri-tools
          ];
        };
      });
    };
}
