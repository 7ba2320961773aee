{
  description = "hello: the containix example, a tiny program whose closure has three store paths";

  # No inputs and no nixpkgs: this builds offline on a machine that only has Nix and a static
  # busybox at /bin/busybox (Debian's and Ubuntu's `busybox-static`).
  #
  # That busybox is the builder of every derivation here, named by its absolute path as a plain
  # string: evaluation never reads it (so the flake stays pure and works from a fresh clone, as
  # `path:./examples/hello` or straight from git), and the store paths are the same on every
  # machine of a system. The build copies it into the store as `busybox`, with `bin/sh` linking
  # to it, so the closure carries its own shell. The build must see /bin/busybox: true where
  # builds run unsandboxed (`sandbox = false`, which Debian's Nix needs anyway), else add
  # `extra-sandbox-paths = /bin/busybox` (or `/bin/busybox=<a static busybox>`) to nix.conf.
  #
  #     containix run path:./examples/hello
  #     nix build path:./examples/hello
  #
  # Because the output paths do not depend on the busybox's bytes, two machines with different
  # busybox builds give the same paths with different contents: fine for an example, and the
  # reason the project's own packages never build this way.
  outputs =
    { self }:
    let
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];

      # The host's static busybox, the only tool. Busybox picks its applet from argv[0], which
      # Nix sets to the builder's file name, `busybox`; it then runs its applets (mkdir, cp, cat)
      # without a PATH.
      hostBusybox = "/bin/busybox";

      packagesFor =
        system:
        let
          # A derivation built by a busybox shell script. `attrs` adds attributes such as pname.
          run =
            name: attrs: script:
            derivation (
              {
                inherit name system;
                builder = hostBusybox;
                args = [
                  "sh"
                  "-c"
                  script
                ];
              }
              // attrs
            );

          # The closure's own copy of busybox: `busybox` at the top (the interpreter of hello's
          # script) and `bin/sh`, `bin/busybox` linking to it, so `sh` is on the closure's PATH.
          busybox = run "busybox" { } ''
            mkdir -p $out/bin
            cp ${hostBusybox} $out/busybox
            chmod 0555 $out/busybox
            ln -s ../busybox $out/bin/sh
            ln -s ../busybox $out/bin/busybox
          '';

          # A second store path for hello to reference: a directory holding one text file.
          greeting = run "hello-greeting-1.0" { } ''
            mkdir -p $out/share/hello
            echo "Your closure came straight from the Nix store." > $out/share/hello/greeting.txt
          '';

          # The program, and `sh` next to it so that `containix run --entrypoint sh` can look
          # around inside the container.
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
                ln -s ${busybox}/bin/sh $out/bin/sh
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
          inherit hello greeting busybox;
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
