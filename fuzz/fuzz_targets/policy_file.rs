//! The node policy file (TOML) never panics the parser, and a policy that parses reports
//! every namespace's effective settings and checks flake refs without panicking.
#![no_main]

use std::path::Path;

use containix_core::request::flake_ref::FlakeRef;
use containix_core::request::policy::node_policy::NodePolicy;
use libfuzzer_sys::fuzz_target;

/// Refs checked against every policy that parses: none reach the host's file system.
const REFS: [&str; 4] = [
    "github:myorg/repo",
    "github:myorg/repo?host=evil.example",
    "gitlab:group%2Fsub/project/main",
    "https://example.com/flake.tar.gz",
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(parsed) = NodePolicy::parse_toml(text, Path::new("fuzz.toml"), &NodePolicy::default())
    else {
        return;
    };
    let policy = &parsed.policy;
    let mut namespaces: Vec<Option<&str>> = vec![None, Some("default")];
    namespaces.extend(policy.namespaces.keys().map(|n| Some(n.as_str())));
    for namespace in namespaces {
        let scope = policy.scope(namespace);
        let _ = scope.effective_timeout(None);
        for text in REFS {
            let _ = scope.check_flake_ref(&FlakeRef::parse(text).unwrap());
        }
    }
});
