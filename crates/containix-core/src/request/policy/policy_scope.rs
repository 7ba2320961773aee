//! The policy one pod gets: the node-wide settings with its Kubernetes namespace's overrides,
//! and the flake ref check made under them.
//!
//! The namespace comes from the container runtime (containerd's CRI annotation
//! `io.kubernetes.cri.sandbox-namespace`) or from the kubelet (the CSI pod info key
//! `csi.storage.k8s.io/pod.namespace`), never from a `containix.dev/` annotation.

use std::path::PathBuf;
use std::time::Duration;

use crate::request::clipped::Clipped;
use crate::request::flake_ref::FlakeRef;
use crate::request::flake_ref::error::Shown;

use super::flake_rule::FlakeRule;
use super::host_paths::{HostFilesystem, HostPaths};
use super::node_policy::{NamespacePolicy, NodePolicy, Realise};
use super::policy_location::DEFAULT_POLICY_PATH;
use super::rule_match::{RuleMatch, Verdict, match_rules};

/// The settings that apply to one namespace's pods.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    policy: &'a NodePolicy,
    namespace: Option<&'a str>,
    overrides: Option<&'a NamespacePolicy>,
}

/// A flake ref the policy allows, and what Nix is to be given for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedRef {
    /// The rule that allows it, as written.
    pub rule: String,
    /// The ref to evaluate: local paths resolved and written explicitly, so Nix reads what the
    /// policy checked. Remote refs are unchanged.
    pub evaluated: FlakeRef,
}

/// Why a flake ref is refused by the policy. Its message names the rules that refused it and
/// why, the allowed prefixes, and ends with where to allow it: the policy file's
/// `allowed-flake-prefixes` (the namespace's table, when it has one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "flake ref `{}` is not allowed on this node{}: {}; allowed prefixes: {}{}; to allow it, add a rule to `allowed-flake-prefixes`{} in {}",
    Shown(.flake_ref),
    .namespace.as_ref().map(|n| format!(" for namespace `{n}`")).unwrap_or_default(),
    .reasons.join("; "),
    if .allowed.is_empty() { "none".to_owned() } else { .allowed.join(", ") },
    if .policy.is_none() { " (built-in defaults)" } else { "" },
    .namespace.as_ref().map(|n| format!(" of [namespaces.{n}]")).unwrap_or_default(),
    .policy.as_ref().map_or_else(|| DEFAULT_POLICY_PATH.to_owned(), |p| p.display().to_string()),
)]
pub struct RefNotAllowed {
    /// The ref as given, in canonical form.
    pub flake_ref: String,
    /// The namespace, when it has settings of its own.
    pub namespace: Option<String>,
    /// Why: each refusing rule with its reason, or why no rule could be consulted.
    pub reasons: Vec<String>,
    /// The allowed prefixes in force.
    pub allowed: Vec<String>,
    /// The policy file, if any.
    pub policy: Option<PathBuf>,
}

impl NodePolicy {
    /// The settings for pods of `namespace`: its `[namespaces.<name>]` overrides when the policy
    /// lists it, else the node-wide settings. `None` (no Kubernetes namespace known, e.g.
    /// `ctr run`) gets the node-wide settings.
    pub fn scope(&self, namespace: Option<&str>) -> Scope<'_> {
        let found = namespace.and_then(|name| self.namespaces.get_key_value(name));
        Scope {
            policy: self,
            namespace: found.map(|(name, _)| name.as_str()),
            overrides: found.map(|(_, overrides)| overrides),
        }
    }

    /// Checks a flake ref under the node-wide settings (see [`Scope::check_flake_ref`]).
    pub fn check_flake_ref(&self, flake: &FlakeRef) -> Result<AllowedRef, RefNotAllowed> {
        self.scope(None).check_flake_ref(flake)
    }

    /// The node-wide deadline for one resolution (see [`Scope::effective_timeout`]).
    pub fn effective_timeout(&self, requested: Option<Duration>) -> Duration {
        self.scope(None).effective_timeout(requested)
    }
}

impl<'a> Scope<'a> {
    /// The namespace whose overrides apply; `None` when the node-wide settings apply.
    pub fn namespace(&self) -> Option<&'a str> {
        self.namespace
    }

    /// The whole node policy.
    pub fn policy(&self) -> &'a NodePolicy {
        self.policy
    }

    /// Where pods of this scope may fetch flakes from.
    pub fn allowed_flake_prefixes(&self) -> &'a [FlakeRule] {
        self.overrides
            .and_then(|o| o.allowed_flake_prefixes.as_deref())
            .unwrap_or(&self.policy.allowed_flake_prefixes)
    }

    /// Whether pods of this scope may have closures built.
    pub fn realise(&self) -> Realise {
        self.overrides
            .and_then(|o| o.realise)
            .unwrap_or(self.policy.realise)
    }

    /// The deadline when a pod sets none.
    pub fn default_timeout(&self) -> Duration {
        self.overrides
            .and_then(|o| o.default_timeout)
            .unwrap_or(self.policy.default_timeout)
    }

    /// The cap on any pod's deadline.
    pub fn max_timeout(&self) -> Duration {
        self.overrides
            .and_then(|o| o.max_timeout)
            .unwrap_or(self.policy.max_timeout)
    }

    /// The deadline for one resolution: the pod's request, or the default, capped by the maximum.
    pub fn effective_timeout(&self, requested: Option<Duration>) -> Duration {
        requested
            .unwrap_or(self.default_timeout())
            .min(self.max_timeout())
    }

    /// Checks `flake` against this scope's allowed prefixes, resolving local paths on this
    /// node. The returned ref is the one to evaluate.
    pub fn check_flake_ref(&self, flake: &FlakeRef) -> Result<AllowedRef, RefNotAllowed> {
        self.check_flake_ref_with(flake, &HostFilesystem)
    }

    /// [`Scope::check_flake_ref`] with local paths resolved through `host`.
    pub fn check_flake_ref_with(
        &self,
        flake: &FlakeRef,
        host: &dyn HostPaths,
    ) -> Result<AllowedRef, RefNotAllowed> {
        let matched = self.explain_with(flake, host);
        match (matched.allowed_by(), &matched.evaluated) {
            (Some(rule), Some(evaluated)) => Ok(AllowedRef {
                rule: rule.rule.clone(),
                evaluated: evaluated.clone(),
            }),
            _ => Err(self.refusal(flake, &matched)),
        }
    }

    /// Every rule's verdict on `flake`, for `containix policy check`.
    pub fn explain_with(&self, flake: &FlakeRef, host: &dyn HostPaths) -> RuleMatch {
        match_rules(self.allowed_flake_prefixes(), flake, host)
    }

    /// The error for a ref no rule allows.
    pub fn refusal(&self, flake: &FlakeRef, matched: &RuleMatch) -> RefNotAllowed {
        let reasons = match &matched.problem {
            Some(problem) => vec![Clipped(problem).to_string()],
            None => {
                let refusing: Vec<String> = matched
                    .rules
                    .iter()
                    .filter(|r| r.verdict == Verdict::Refuses)
                    .map(|r| format!("rule `{}` {}", r.rule, Clipped(&r.reason)))
                    .collect();
                if refusing.is_empty() {
                    vec![format!("no rule allows `{}:` refs", flake.scheme())]
                } else {
                    refusing
                }
            }
        };
        RefNotAllowed {
            flake_ref: flake.to_string(),
            namespace: self.namespace.map(str::to_owned),
            reasons,
            allowed: self
                .allowed_flake_prefixes()
                .iter()
                .map(ToString::to_string)
                .collect(),
            policy: self.policy.source.clone(),
        }
    }
}
