{
  description = "hello: the containix example, a tiny program whose closure has three store paths";

  # No inputs and no nixpkgs: this builds offline on a machine that only has Nix.
  #
  # The only tool is a static busybox, read from ./bb/busybox. That file is not committed (it is a
  # binary, and each machine has its own architecture): scripts/setup-node.sh puts a copy of
  # /bin/busybox (Debian's busybox-static) there, and the test harness builds a temporary copy of
  # this directory with busybox added (crates/containix-testkit/src/fixtures.rs). ./bb is a
  # directory so the store copy keeps the file name `busybox`, which busybox needs to pick its
  # applet from argv[0].
  # Because ./bb/busybox is untracked, build this flake as a `path:` flake so Nix copies the
  # directory as it is instead of the files git tracks:
  #
  #     nix build path:./examples/hello
  #
  # Alternatives that were rejected: an absolute `/bin/busybox` needs --impure; a `file://`
  # flake input pins one machine's binary in flake.lock and names the store file `source`.
  outputs =
    { self }:
    let
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];

      packagesFor =
        system:
        let
          busybox = builtins.path {
            path = ./bb;
            name = "busybox";
          };
          # A derivation built by a busybox shell script (busybox runs its applets, such as mkdir
          # and cat, without a PATH). `attrs` adds attributes such as pname and version.
          run =
            name: attrs: script:
            derivation (
              {
                inherit name system;
                builder = "${busybox}/busybox";
                args = [
                  "sh"
                  "-c"
                  script
                ];
              }
              // attrs
            );

          # A second store path for hello to reference: a directory holding one text file.
          greeting = run "hello-greeting-1.0" { } ''
            mkdir -p $out/share/hello
            echo "Your closure came straight from the Nix store." > $out/share/hello/greeting.txt
          '';

          hello =
            run "hello-1.0"
              {
                pname = "hello";
                version = "1.0";
              }
              ''
                mkdir -p $out/bin
                cat > $out/bin/hello <<EOF
                #!${busybox}/busybox sh
                echo "Hello from containix!"
                ${busybox}/busybox cat ${greeting}/share/hello/greeting.txt
                EOF
                chmod 0555 $out/bin/hello
              ''
            // {
              meta = {
                description = "Prints a greeting, part of which lives in another store path";
                mainProgram = "hello";
              };
            };
        in
        {
          default = hello;
          inherit hello greeting;
        };
    in
    {
      packages = builtins.listToAttrs (
        map (system: {
          name = system;
          value = packagesFor system;
        }) systems
      );
    };
}
