# NixOS module: a containix node. Installs the binaries, writes the node policy to
# /etc/containix/policy.toml, registers the `containix` runtime handler with the NixOS containerd
# service, and optionally runs the CSI node plugin. docs/nixos.md documents every option.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;

  cfg = config.services.containix;
  policy = import ./policy.nix;
  toml = pkgs.formats.toml { };

  policyFile = toml.generate "containix-policy.toml" (
    policy.render {
      values = lib.getAttrs (builtins.attrNames policy.keys) cfg;
      inherit (cfg) extraPolicy;
    }
  );

  # containerd's CRI plugin that holds `containerd.runtimes`, by config version.
  criPlugin =
    {
      "2" = "io.containerd.grpc.v1.cri";
      "3" = "io.containerd.cri.v1.runtime";
    }
    .${toString cfg.containerd.configVersion};

  # Groups of <integer><unit> with units h, then m, then s, at least one: what containix's duration
  # parser reads (it also refuses zero).
  duration = types.strMatching "[0-9]+h([0-9]+m)?([0-9]+s)?|[0-9]+m([0-9]+s)?|[0-9]+s" // {
    description = "duration such as \"90s\", \"2m\" or \"1m30s\"";
  };
  absolutePath = types.strMatching "/.*" // {
    description = "absolute path";
  };

  csiSocket = lib.removePrefix "unix://" cfg.csi.endpoint;
in
{
  options.services.containix = {
    enable = lib.mkEnableOption "containix, which runs Nix closures as Kubernetes pods with no container image";

    package = mkOption {
      type = types.package;
      default = pkgs.callPackage ./package.nix { };
      defaultText = lib.literalExpression "pkgs.callPackage ./nix/package.nix { }";
      description = "The containix package: the `containix` CLI, the containerd shim `containerd-shim-containix-v1` and `containix-csi`.";
    };

    # Node policy: one option per key of /etc/containix/policy.toml (nix/policy.nix maps them).

    allowedFlakePrefixes = mkOption {
      type = types.listOf types.nonEmptyStr;
      default = policy.defaults.allowedFlakePrefixes;
      example = [
        "github:my-org/"
        "path:/srv/flakes/"
      ];
      description = ''
        Policy key `allowed-flake-prefixes`: where pods may fetch flakes from. Each entry is a rule
        matched against the parsed ref as Nix will fetch it (scheme, host including a forge's
        `?host=`, then owner, repository, URL path or folder as whole segments; local folders with
        symlinks and `..` resolved). Local refs (`path:`, `git+file:`, `file:`) are refused unless
        listed, because evaluating a local path copies that host directory into the world-readable
        store. docs/policy.md lists every rule form.
      '';
    };

    realise = mkOption {
      type = types.enum [
        "substitute"
        "build"
      ];
      default = policy.defaults.realise;
      example = "build";
      description = ''
        Policy key `realise`: `substitute` only fetches closures from the binary caches in
        nix.conf (a path no cache has fails the pod); `build` fetches what the caches have and
        builds the rest on the node.
      '';
    };

    defaultTimeout = mkOption {
      type = duration;
      default = policy.defaults.defaultTimeout;
      example = "30s";
      description = "Policy key `default-timeout`: the resolution deadline of a pod that sets no `containix.dev/timeout`.";
    };

    maxTimeout = mkOption {
      type = duration;
      default = policy.defaults.maxTimeout;
      example = "5m";
      description = "Policy key `max-timeout`: the cap on any pod's `containix.dev/timeout`. Must be at least `defaultTimeout`.";
    };

    system = mkOption {
      type = types.strMatching "[A-Za-z0-9_]+-[A-Za-z0-9_-]+";
      default = pkgs.stdenv.hostPlatform.system;
      defaultText = lib.literalExpression "pkgs.stdenv.hostPlatform.system";
      example = "aarch64-linux";
      description = "Policy key `system`: the Nix system pods' flakes are evaluated for.";
    };

    daemonSocket = mkOption {
      type = absolutePath;
      default = policy.defaults.daemonSocket;
      description = ''
        Policy key `daemon-socket`: the Nix daemon's socket. `NIX_DAEMON_SOCKET_PATH` in
        containix's environment overrides it, as it does for Nix.
      '';
    };

    stateDir = mkOption {
      type = absolutePath;
      default = policy.defaults.stateDir;
      example = "/srv/containix";
      description = ''
        Policy key `state-dir`: where containix keeps GC roots, the resolution cache, node-wide
        locks and per-container state. The module creates it with systemd-tmpfiles.
      '';
    };

    nixCommand = mkOption {
      type = types.nonEmptyStr;
      default = lib.getExe' config.nix.package "nix";
      defaultText = lib.literalExpression ''lib.getExe' config.nix.package "nix"'';
      description = ''
        Policy key `nix-command`: the `nix` command containix runs to evaluate flakes. The default
        is the system's Nix by absolute path, so it does not depend on containerd's PATH.
      '';
    };

    packageSet = mkOption {
      type = types.nullOr types.nonEmptyStr;
      default = policy.defaults.packageSet;
      example = "github:NixOS/nixpkgs/nixos-25.11";
      description = ''
        Policy key `package-set`: the flake whose `legacyPackages.<system>` (else
        `packages.<system>`) resolves the `containix.dev/packages` annotation. `null` leaves the key
        out, and that annotation is then refused on this node.
      '';
    };

    namespaces = mkOption {
      type = types.attrsOf (
        types.submodule {
          options = {
            allowedFlakePrefixes = mkOption {
              type = types.nullOr (types.listOf types.nonEmptyStr);
              default = null;
              description = "Replaces `allowedFlakePrefixes` for this namespace's pods; `null` keeps the node-wide list.";
            };
            realise = mkOption {
              type = types.nullOr (
                types.enum [
                  "substitute"
                  "build"
                ]
              );
              default = null;
              description = "Replaces `realise` for this namespace's pods; `null` keeps the node-wide value.";
            };
            defaultTimeout = mkOption {
              type = types.nullOr duration;
              default = null;
              description = "Replaces `defaultTimeout` for this namespace's pods.";
            };
            maxTimeout = mkOption {
              type = types.nullOr duration;
              default = null;
              description = "Replaces `maxTimeout` for this namespace's pods.";
            };
          };
        }
      );
      default = policy.defaults.namespaces;
      example = lib.literalExpression ''
        {
          team-a = {
            allowedFlakePrefixes = [ "github:team-a/" ];
            realise = "build";
          };
        }
      '';
      description = ''
        Policy tables `[namespaces.<name>]`: per Kubernetes namespace, the allowed prefixes, realise
        mode and deadlines its pods get instead of the node-wide ones. The namespace is the one the
        container runtime (CRI) or the kubelet (CSI pod info) reports; pods cannot choose it.
      '';
    };

    extraPolicy = mkOption {
      type = toml.type;
      default = { };
      example = lib.literalExpression ''{ some-newer-key = "value"; }'';
      description = ''
        Keys written verbatim into /etc/containix/policy.toml, for policy keys newer than this
        module. containix refuses a policy file with a key it does not know, and setting a key that
        one of the options above writes is an evaluation error.
      '';
    };

    containerd.enable = mkOption {
      type = types.bool;
      default = true;
      example = false;
      description = ''
        Whether to enable the NixOS containerd service and register containix with it: the shim on
        containerd's PATH and the `containix` runtime handler in its CRI config. Turn it off when
        another containerd runs the pods (k3s's embedded one, for instance) and configure that one
        as docs/nixos.md describes.
      '';
    };

    containerd.configVersion = mkOption {
      type = types.enum [
        2
        3
      ];
      default = 2;
      example = 3;
      description = ''
        The `version` of the config the NixOS containerd module writes, which decides the CRI
        plugin table the handler goes in: 2 puts it under `plugins."io.containerd.grpc.v1.cri"`,
        3 under `plugins."io.containerd.cri.v1.runtime"`. nixpkgs' module writes version 2 (which
        containerd 2.x migrates on load); an assertion fails the build if the two disagree.
      '';
    };

    csi.enable = lib.mkEnableOption "the containix CSI node plugin (driver `containix.dev`) as a systemd service";

    csi.endpoint = mkOption {
      type = types.strMatching "unix:///.+";
      default = "unix:///var/lib/kubelet/plugins/containix.dev/csi.sock";
      description = ''
        The CSI endpoint the plugin listens on. The kubelet learns it from the node-driver-registrar
        (see docs/nixos.md); keep it under /var/lib/kubelet/plugins/.
      '';
    };

    csi.nodeId = mkOption {
      type = types.nullOr types.nonEmptyStr;
      default = null;
      example = "node-1";
      description = "The node id the plugin reports to Kubernetes; `null` means the host name, which matches the kubelet's default node name.";
    };

    csi.stateDir = mkOption {
      type = types.nullOr absolutePath;
      default = null;
      example = "/var/lib/containix/csi";
      description = "Where the plugin records published volumes so a restarted plugin can unpublish them; `null` means `<stateDir>/csi`.";
    };

    csi.logLevel = mkOption {
      type = types.enum [
        "error"
        "warn"
        "info"
        "debug"
        "trace"
      ];
      default = "info";
      example = "debug";
      description = "The CSI plugin's log level (its journal is `journalctl -u containix-csi`).";
    };
  };

  config = lib.mkIf cfg.enable (
    lib.mkMerge [
      {
        environment.systemPackages = [
          cfg.package
          # `containix run` and `containix doctor` call runc from PATH.
          pkgs.runc
        ];

        environment.etc."containix/policy.toml".source = policyFile;

        systemd.tmpfiles.rules = [ "d ${cfg.stateDir} 0755 root root -" ];

        # Flake evaluation (`containix.dev/flake`, `containix.dev/packages`) needs both features.
        # Appended to whatever else the configuration enables.
        nix.settings.experimental-features = [
          "nix-command"
          "flakes"
        ];
      }

      (lib.mkIf cfg.containerd.enable {
        assertions = [
          {
            assertion = (config.virtualisation.containerd.settings.version or 2) == cfg.containerd.configVersion;
            message = ''
              services.containix.containerd.configVersion is ${toString cfg.containerd.configVersion}, but
              virtualisation.containerd.settings.version is ${
                toString (config.virtualisation.containerd.settings.version or "unset")
              }; set them to the same version so the containix handler lands in the CRI table containerd reads.
            '';
          }
        ];

        virtualisation.containerd.enable = true;
        virtualisation.containerd.settings.plugins.${criPlugin}.containerd.runtimes.containix = {
          runtime_type = "io.containerd.containix.v1";
          pod_annotations = [ "containix.dev/*" ];
        };

        # containerd starts `containerd-shim-containix-v1` from its PATH; the shim talks to the
        # nix-daemon, so order containerd after its socket.
        systemd.services.containerd = {
          path = [ cfg.package ];
          wants = [ "nix-daemon.socket" ];
          after = [ "nix-daemon.socket" ];
        };

        # containerd runs with the config given by --config; link it where `containix doctor` and
        # people look for it.
        environment.etc."containerd/config.toml".source =
          lib.mkDefault config.virtualisation.containerd.args.config;
      })

      (lib.mkIf cfg.csi.enable {
        systemd.tmpfiles.rules = [ "d ${dirOf csiSocket} 0750 root root -" ];

        systemd.services.containix-csi = {
          description = "containix CSI node plugin";
          wantedBy = [ "multi-user.target" ];
          wants = [ "nix-daemon.socket" ];
          after = [ "nix-daemon.socket" ];
          restartTriggers = [ policyFile ];
          serviceConfig = {
            ExecStart = lib.escapeShellArgs (
              [
                (lib.getExe' cfg.package "containix-csi")
                "--endpoint"
                cfg.csi.endpoint
                "--config"
                "/etc/containix/policy.toml"
                "--log-level"
                cfg.csi.logLevel
              ]
              ++ lib.optionals (cfg.csi.nodeId != null) [
                "--node-id"
                cfg.csi.nodeId
              ]
              ++ lib.optionals (cfg.csi.stateDir != null) [
                "--state-dir"
                cfg.csi.stateDir
              ]
            );
            Restart = "on-failure";
            RestartSec = "5s";
          };
        };
      })
    ]
  );
}
