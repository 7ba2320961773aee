# NixOS VM test: a machine with services.containix enabled passes `containix doctor`, runs a
# containix container through containerd (ctr, the containix runtime, no image content), and
# serves the CSI plugin's socket. Run with `nix build .#checks.x86_64-linux.vm`.
#
# The VM has no network: the closure it runs (pkgs.hello) is put in the VM's store up front and
# named with the `containix.dev/store-paths` annotation, so nothing is evaluated or fetched.
{
  pkgs,
  module,
  containix,
}:
let
  inherit (containix) version;
in
pkgs.testers.runNixOSTest {
  name = "containix";

  nodes.machine =
    { lib, ... }:
    {
      imports = [ module ];

      services.containix = {
        enable = true;
        package = containix;
        csi.enable = true;
      };

      # Valid in the VM's store without a substituter.
      virtualisation.additionalPaths = [ pkgs.hello ];
      # No binary cache is reachable from the VM; do not wait on one.
      nix.settings.substituters = lib.mkForce [ ];
    };

  testScript = ''
    machine.wait_for_unit("containerd.service")
    machine.wait_for_unit("containix-csi.service")

    with subtest("containix doctor finds nothing that keeps pods from running"):
        print(machine.succeed("containix doctor"))

    with subtest("the policy file is the one the module rendered"):
        machine.succeed("test -f /etc/containix/policy.toml")
        machine.succeed("grep -F 'realise = \"substitute\"' /etc/containix/policy.toml")

    with subtest("a containix container runs a closure through containerd"):
        machine.succeed("containix image empty --out /tmp/containix-empty.tar")
        machine.succeed("ctr --namespace containix-test images import /tmp/containix-empty.tar")
        out = machine.succeed(
            "ctr --namespace containix-test run --rm"
            " --runtime io.containerd.containix.v1"
            " --annotation containix.dev/store-paths=${pkgs.hello}"
            " docker.io/containix/empty:1.0.0 hello-1 hello"
        )
        assert "Hello, world!" in out, out
        # The shim released the container's rootfs and state.
        machine.succeed("test -z \"$(ctr --namespace containix-test containers list --quiet)\"")

    with subtest("the CSI plugin listens where the kubelet's registrar expects it"):
        machine.wait_for_file("/var/lib/kubelet/plugins/containix.dev/csi.sock")
  '';
}
