# The containix node policy (/etc/containix/policy.toml) as data: which module option writes which
# policy key, the defaults containix itself applies, and the function that turns option values into
# the attribute set rendered as TOML.
#
# Pure Nix with no nixpkgs, so the test suite (tests/flake_nix.rs) evaluates it with
# `nix-instantiate --eval` and hands the result to containix's own policy parser.
let
  # Module option name -> policy key. The keys are exactly those the policy parser accepts
  # (crates/containix-core/src/request/policy.rs); an unknown key makes containix refuse the file.
  keys = {
    allowedFlakePrefixes = "allowed-flake-prefixes";
    realise = "realise";
    defaultTimeout = "default-timeout";
    maxTimeout = "max-timeout";
    system = "system";
    daemonSocket = "daemon-socket";
    stateDir = "state-dir";
    nixCommand = "nix-command";
    packageSet = "package-set";
    namespaces = "namespaces";
  };

  # The settings a namespace may override ([namespaces.<name>] tables): option -> key.
  namespaceKeys = {
    allowedFlakePrefixes = "allowed-flake-prefixes";
    realise = "realise";
    defaultTimeout = "default-timeout";
    maxTimeout = "max-timeout";
  };

  # What containix uses when a key is absent (NodePolicy::default). `system` is the machine's own
  # and `package-set` is unset, so both are null here.
  defaults = {
    allowedFlakePrefixes = [
      "github:"
      "gitlab:"
      "sourcehut:"
      "git+https:"
      "https:"
      "tarball+https:"
    ];
    realise = "substitute";
    defaultTimeout = "2m";
    maxTimeout = "10m";
    system = null;
    daemonSocket = "/nix/var/nix/daemon-socket/socket";
    stateDir = "/var/lib/containix";
    nixCommand = "nix";
    packageSet = null;
    namespaces = { };
  };

  # Option values with names in `names` (null: leave the key out) -> an attribute set of keys.
  renderKeys =
    names: values:
    builtins.listToAttrs (
      map (name: {
        name = names.${name};
        value = values.${name};
      }) (builtins.filter (name: (values.${name} or null) != null) (builtins.attrNames names))
    );

  # `namespaces` option value -> its TOML tables; no tables at all when no namespace is set.
  renderNamespaces =
    namespaces:
    if namespaces == null || namespaces == { } then
      null
    else
      builtins.mapAttrs (_: renderKeys namespaceKeys) namespaces;

  # Option values (null: leave the key out) plus extra keys -> the policy attribute set.
  # An extra key that a typed option already writes is an error rather than a silent override.
  render =
    { values, extraPolicy ? { } }:
    let
      typed = renderKeys keys (values // { namespaces = renderNamespaces (values.namespaces or null); });
      clashes = builtins.attrNames (builtins.intersectAttrs typed extraPolicy);
      optionFor = key: builtins.head (builtins.filter (name: keys.${name} == key) (builtins.attrNames keys));
    in
    if clashes != [ ] then
      throw (
        "services.containix.extraPolicy sets `${builtins.head clashes}`, which "
        + "services.containix.${optionFor (builtins.head clashes)} already writes; set that option instead"
      )
    else
      typed // extraPolicy;
in
{
  inherit
    keys
    namespaceKeys
    defaults
    render
    ;
}
