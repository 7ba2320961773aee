//! CSI volume attributes (the `volumeAttributes` of an inline ephemeral volume) read into a
//! typed [`Request`], with the same value parsing, policy and error texts as the pod annotations.
//!
//! | attribute | meaning | annotation equivalent |
//! |---|---|---|
//! | `flakeRef` | flake ref with optional `#attr` | `containix.dev/flake` |
//! | `storePaths` | pinned store paths (whitespace or comma separated) | `containix.dev/store-paths` |
//! | `packages` | package attribute names in the node's package set | `containix.dev/packages` |
//! | `timeout` | resolution deadline (`90s`, `2m`, `1m30s`), capped by node policy | `containix.dev/timeout` |
//!
//! Exactly one of `flakeRef`, `storePaths` and `packages` is required. Any other attribute is an
//! error that lists the valid ones, except the `csi.storage.k8s.io/*` keys a kubelet adds when
//! the driver asks for pod info on mount (`podInfoOnMount: true`); those are read into
//! [`PodInfo`] (for GC root names and log context), and the pod's namespace picks the node
//! policy's settings for that namespace. The kubelet writes its pod info keys over any a pod
//! author put in `volumeAttributes`, so with `podInfoOnMount` the namespace cannot be spoofed.

use std::collections::BTreeMap;

use crate::request::annotations::{AnnotationError, PREFIX, PodAnnotations};
use crate::request::clipped::Clipped;
use crate::request::container_request::{PackageNameError, Request, Source};
use crate::request::duration::DurationError;
use crate::request::flake_ref::InstallableError;
use crate::request::flake_ref::error::Shown;
use crate::request::policy::node_policy::NodePolicy;
use crate::request::policy::policy_scope::RefNotAllowed;
use crate::store::store_path::StorePathError;

/// The attribute naming a flake installable.
pub const FLAKE_REF: &str = "flakeRef";
/// The attribute naming pinned store paths.
pub const STORE_PATHS: &str = "storePaths";
/// The attribute naming packages of the node's package set.
pub const PACKAGES: &str = "packages";
/// The attribute giving the resolution deadline.
pub const TIMEOUT: &str = "timeout";
/// Every attribute containix reads, in documentation order.
pub const ATTRIBUTES: [&str; 4] = [FLAKE_REF, STORE_PATHS, PACKAGES, TIMEOUT];

/// The prefix of the pod-info keys a kubelet adds (`podInfoOnMount: true`).
pub const POD_INFO_PREFIX: &str = "csi.storage.k8s.io/";

/// The container name a volume's [`Request`] carries: a volume serves every container that
/// mounts it, so no single container name applies.
pub const VOLUME_CONTAINER: &str = "csi-volume";

/// The annotation key (without [`PREFIX`]) each attribute corresponds to.
const ANNOTATION_KEYS: [(&str, &str); 4] = [
    (FLAKE_REF, "flake"),
    (STORE_PATHS, "store-paths"),
    (PACKAGES, "packages"),
    (TIMEOUT, "timeout"),
];

/// Why a volume's attributes were refused. Every variant names the attribute.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VolumeAttributeError {
    #[error(
        "unknown volume attribute `{}`; valid attributes are flakeRef, storePaths, \
         packages and timeout (and the csi.storage.k8s.io/* pod info keys)",
        Shown(.attribute)
    )]
    Unknown { attribute: String },
    #[error(
        "volume attributes name no source; give exactly one of flakeRef, storePaths or packages"
    )]
    NoSource,
    #[error(
        "volume attributes `{first}` and `{second}` both name a source; give exactly one of \
         flakeRef, storePaths or packages"
    )]
    ConflictingSources { first: String, second: String },
    #[error("volume attribute `{attribute}`: empty value; expected {expected}")]
    EmptyValue {
        attribute: String,
        expected: &'static str,
    },
    #[error("volume attribute `{attribute}`: {}", Clipped(.source))]
    Flake {
        attribute: String,
        source: InstallableError,
    },
    #[error("volume attribute `{attribute}`: {}", Clipped(.source))]
    StorePath {
        attribute: String,
        source: StorePathError,
    },
    #[error("volume attribute `{attribute}`: {}", Clipped(.source))]
    Package {
        attribute: String,
        source: PackageNameError,
    },
    #[error("volume attribute `{attribute}`: {}", Clipped(.source))]
    Timeout {
        attribute: String,
        source: DurationError,
    },
    #[error("volume attribute `{attribute}`: {}", Clipped(.source))]
    NotAllowed {
        attribute: String,
        source: Box<RefNotAllowed>,
    },
    #[error(
        "volume attribute `{attribute}`: this node has no package set configured \
         (`package-set` in the node policy); use flakeRef or storePaths"
    )]
    NoPackageSet { attribute: String },
    /// A rule of the annotation parser without an attribute-specific form.
    #[error("volume attribute `{}`: {}", Shown(.attribute), Clipped(.message))]
    Invalid { attribute: String, message: String },
}

impl VolumeAttributeError {
    /// The attribute the error is about; `None` when no source was given at all.
    pub fn attribute(&self) -> Option<&str> {
        match self {
            Self::NoSource => None,
            Self::Unknown { attribute }
            | Self::EmptyValue { attribute, .. }
            | Self::Flake { attribute, .. }
            | Self::StorePath { attribute, .. }
            | Self::Package { attribute, .. }
            | Self::Timeout { attribute, .. }
            | Self::NotAllowed { attribute, .. }
            | Self::NoPackageSet { attribute }
            | Self::Invalid { attribute, .. } => Some(attribute),
            Self::ConflictingSources { second, .. } => Some(second),
        }
    }
}

/// The pod a volume is published for, from the kubelet's `csi.storage.k8s.io/*` keys. Used only
/// to name GC roots and to give logs context; absent keys stay `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PodInfo {
    /// `csi.storage.k8s.io/pod.name`.
    pub name: Option<String>,
    /// `csi.storage.k8s.io/pod.namespace`.
    pub namespace: Option<String>,
    /// `csi.storage.k8s.io/pod.uid`.
    pub uid: Option<String>,
    /// `csi.storage.k8s.io/serviceAccount.name`.
    pub service_account: Option<String>,
    /// `csi.storage.k8s.io/ephemeral`: whether the kubelet says the volume is inline ephemeral.
    pub ephemeral: Option<bool>,
}

impl PodInfo {
    /// `namespace/name` when both are known, for logs and GC root names.
    pub fn qualified_name(&self) -> Option<String> {
        match (&self.namespace, &self.name) {
            (Some(namespace), Some(name)) => Some(format!("{namespace}/{name}")),
            (None, Some(name)) => Some(name.clone()),
            _ => None,
        }
    }
}

/// A volume's validated attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeAttributes {
    /// What to mount, as the annotations would have asked for it.
    pub request: Request,
    /// The pod the kubelet publishes the volume for, when it says.
    pub pod: PodInfo,
}

impl VolumeAttributes {
    /// Validates a volume's attributes (its `volume_context`).
    pub fn parse(attributes: &BTreeMap<String, String>) -> Result<Self, VolumeAttributeError> {
        let mut annotations = BTreeMap::new();
        let mut pod = PodInfo::default();
        for (attribute, value) in attributes {
            if let Some(key) = attribute.strip_prefix(POD_INFO_PREFIX) {
                read_pod_info(&mut pod, key, value);
                continue;
            }
            let Some((_, key)) = ANNOTATION_KEYS.iter().find(|(a, _)| a == attribute) else {
                return Err(VolumeAttributeError::Unknown {
                    attribute: attribute.clone(),
                });
            };
            annotations.insert(format!("{PREFIX}{key}"), value.clone());
        }
        let parsed = PodAnnotations::parse(&annotations).map_err(from_annotation_error)?;
        let mut request = parsed
            .request_for(VOLUME_CONTAINER)
            .map_err(from_annotation_error)?
            .ok_or(VolumeAttributeError::NoSource)?;
        request.namespace = pod.namespace.clone();
        Ok(Self { request, pod })
    }

    /// Checks the request against the node policy's settings for the pod's namespace: flake refs
    /// must be allowed and `packages` needs a configured package set. The resolver checks the
    /// flake ref again, the same way; this check only fails early, naming the attribute.
    pub fn check_policy(&self, policy: &NodePolicy) -> Result<(), VolumeAttributeError> {
        let scope = policy.scope(self.request.namespace.as_deref());
        match &self.request.source {
            Source::Flake(installable) => scope
                .check_flake_ref(&installable.flake)
                .map(|_| ())
                .map_err(|source| VolumeAttributeError::NotAllowed {
                    attribute: FLAKE_REF.to_owned(),
                    source: Box::new(source),
                }),
            Source::Packages(_) if policy.package_set.is_none() => {
                Err(VolumeAttributeError::NoPackageSet {
                    attribute: PACKAGES.to_owned(),
                })
            }
            Source::Packages(_) | Source::StorePaths(_) => Ok(()),
        }
    }

    /// The attribute the request's source came from.
    pub fn source_attribute(&self) -> &'static str {
        match self.request.source {
            Source::Flake(_) => FLAKE_REF,
            Source::StorePaths(_) => STORE_PATHS,
            Source::Packages(_) => PACKAGES,
        }
    }
}

fn read_pod_info(pod: &mut PodInfo, key: &str, value: &str) {
    let value = value.trim();
    let text = (!value.is_empty()).then(|| value.to_owned());
    match key {
        "pod.name" => pod.name = text,
        "pod.namespace" => pod.namespace = text,
        "pod.uid" => pod.uid = text,
        "serviceAccount.name" => pod.service_account = text,
        "ephemeral" => pod.ephemeral = value.parse().ok(),
        // Other kubelet keys (service account tokens among them) are accepted and not kept.
        _ => {}
    }
}

/// The attribute an annotation key came from.
fn attribute_of(key: &str) -> String {
    let bare = key.strip_prefix(PREFIX).unwrap_or(key);
    ANNOTATION_KEYS
        .iter()
        .find(|(_, k)| *k == bare)
        .map_or_else(|| key.to_owned(), |(attribute, _)| (*attribute).to_owned())
}

fn from_annotation_error(error: AnnotationError) -> VolumeAttributeError {
    match error {
        AnnotationError::EmptyValue { key, expected } => VolumeAttributeError::EmptyValue {
            attribute: attribute_of(&key),
            expected,
        },
        AnnotationError::Flake { key, source } => VolumeAttributeError::Flake {
            attribute: attribute_of(&key),
            source,
        },
        AnnotationError::StorePath { key, source } => VolumeAttributeError::StorePath {
            attribute: attribute_of(&key),
            source,
        },
        AnnotationError::Package { key, source } => VolumeAttributeError::Package {
            attribute: attribute_of(&key),
            source,
        },
        AnnotationError::Timeout { key, source } => VolumeAttributeError::Timeout {
            attribute: attribute_of(&key),
            source,
        },
        AnnotationError::ConflictingSources { first, second, .. } => {
            VolumeAttributeError::ConflictingSources {
                first: attribute_of(&first),
                second: attribute_of(&second),
            }
        }
        AnnotationError::UnknownKey { key } => VolumeAttributeError::Unknown {
            attribute: attribute_of(&key),
        },
        other => {
            let attribute = match &other {
                AnnotationError::InvalidContainerName { key, .. }
                | AnnotationError::ValueTooLong { key, .. }
                | AnnotationError::PassthroughConflict { key, .. }
                | AnnotationError::EntrypointWithoutSource { key, .. } => attribute_of(key),
                _ => String::from("volumeAttributes"),
            };
            VolumeAttributeError::Invalid {
                attribute,
                message: other.to_string(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;

    const APP: &str = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-app";
    const LIB: &str = "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-lib";

    fn parse(pairs: &[(&str, &str)]) -> Result<VolumeAttributes, VolumeAttributeError> {
        let map = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        VolumeAttributes::parse(&map)
    }

    #[test]
    fn store_paths_and_timeout_become_a_request() {
        let parsed = parse(&[
            (STORE_PATHS, &format!("{APP}, {LIB}\n{APP}")),
            (TIMEOUT, "1m30s"),
            ("csi.storage.k8s.io/pod.name", "web-0"),
            ("csi.storage.k8s.io/pod.namespace", "shop"),
            ("csi.storage.k8s.io/pod.uid", "1234"),
            ("csi.storage.k8s.io/ephemeral", "true"),
            ("csi.storage.k8s.io/serviceAccount.tokens", "{}"),
        ])
        .unwrap();
        let Source::StorePaths(paths) = &parsed.request.source else {
            panic!("{:?}", parsed.request.source);
        };
        let paths: Vec<&str> = paths.iter().map(|p| p.as_str()).collect();
        assert_eq!(paths, [APP, LIB]);
        assert_eq!(parsed.request.timeout, Some(Duration::from_secs(90)));
        assert_eq!(parsed.request.container, VOLUME_CONTAINER);
        assert_eq!(parsed.source_attribute(), STORE_PATHS);
        assert_eq!(parsed.pod.qualified_name().as_deref(), Some("shop/web-0"));
        assert_eq!(parsed.pod.uid.as_deref(), Some("1234"));
        assert_eq!(parsed.pod.ephemeral, Some(true));
    }

    #[test]
    fn flake_refs_and_packages_parse_like_annotations() {
        let parsed = parse(&[(FLAKE_REF, "github:org/app#default")]).unwrap();
        assert!(matches!(parsed.request.source, Source::Flake(_)));
        let parsed = parse(&[(PACKAGES, "curl jq")]).unwrap();
        assert!(matches!(parsed.request.source, Source::Packages(ref p) if p.len() == 2));
    }

    #[test]
    fn every_refusal_names_the_attribute() {
        for (pairs, attribute, text) in [
            (vec![], None, "no source"),
            (vec![(TIMEOUT, "1m")], None, "no source"),
            (
                vec![(FLAKE_REF, "github:org/app"), (STORE_PATHS, APP)],
                Some(STORE_PATHS),
                "`flakeRef` and `storePaths` both name a source",
            ),
            (vec![("flake", "github:a/b")], Some("flake"), "unknown"),
            (
                vec![("containix.dev/flake", "github:a/b")],
                Some("containix.dev/flake"),
                "unknown",
            ),
            (vec![(FLAKE_REF, "  ")], Some(FLAKE_REF), "empty value"),
            (vec![(FLAKE_REF, "not a ref")], Some(FLAKE_REF), "flakeRef"),
            (
                vec![(STORE_PATHS, "/etc/passwd")],
                Some(STORE_PATHS),
                "storePaths",
            ),
            (vec![(PACKAGES, "7zip")], Some(PACKAGES), "7zip"),
            (
                vec![(STORE_PATHS, APP), (TIMEOUT, "soon")],
                Some(TIMEOUT),
                "`timeout`",
            ),
        ] {
            let err = parse(&pairs).unwrap_err();
            assert_eq!(err.attribute(), attribute, "{pairs:?}: {err}");
            let message = err.to_string();
            assert!(message.contains(text), "{pairs:?}: {message}");
            if let Some(attribute) = attribute {
                assert!(message.contains(attribute), "{message}");
            }
            assert!(
                !message.contains("containix.dev/flake")
                    || attribute == Some("containix.dev/flake"),
                "{message}"
            );
        }
    }

    #[test]
    fn policy_refuses_disallowed_prefixes_and_missing_package_sets() {
        let policy = NodePolicy::from_toml("", Path::new("/etc/containix/policy.toml")).unwrap();
        let allowed = parse(&[(FLAKE_REF, "github:org/app")]).unwrap();
        assert_eq!(allowed.check_policy(&policy), Ok(()));
        let local = parse(&[(FLAKE_REF, "path:/etc")]).unwrap();
        let err = local.check_policy(&policy).unwrap_err();
        assert_eq!(err.attribute(), Some(FLAKE_REF));
        assert!(
            err.to_string().contains("not allowed on this node"),
            "{err}"
        );
        let packages = parse(&[(PACKAGES, "curl")]).unwrap();
        let err = packages.check_policy(&policy).unwrap_err();
        assert_eq!(err.attribute(), Some(PACKAGES));
        let paths = parse(&[(STORE_PATHS, APP)]).unwrap();
        assert_eq!(paths.check_policy(&policy), Ok(()));
    }

    /// The CSI volume attribute surface against hostile values (issue: adversarial inputs):
    /// every row refused naming the attribute, in one short line, or proven harmless.
    #[test]
    fn hostile_volume_attributes_are_refused_naming_the_attribute_or_are_harmless() {
        let policy = NodePolicy::from_toml(
            "[namespaces.team-a]\nallowed-flake-prefixes = [\"github:team-a/\"]\n",
            Path::new("/etc/containix/policy.toml"),
        )
        .unwrap();
        let mib = "a".repeat(1 << 20);
        let big_flake = format!("github:{mib}/r");
        let dotdot = format!("{APP}/../../etc");
        #[rustfmt::skip]
        type Row<'a> = (Vec<(&'a str, &'a str)>, &'a str, &'a str);
        let refused: Vec<Row<'_>> = vec![
            (vec![(FLAKE_REF, "-x")], FLAKE_REF, "starts with `-`"),
            (vec![(FLAKE_REF, "--option")], FLAKE_REF, "starts with `-`"),
            (
                vec![(FLAKE_REF, "github:o/r\0")],
                FLAKE_REF,
                "character '\\0'",
            ),
            (
                vec![(FLAKE_REF, "github:o/\nr")],
                FLAKE_REF,
                "character '\\n'",
            ),
            (
                vec![(FLAKE_REF, &big_flake)],
                FLAKE_REF,
                "bytes long; at most 65536",
            ),
            (
                vec![(FLAKE_REF, "github:o/r?dir=../..")],
                FLAKE_REF,
                "invalid dir `../..`",
            ),
            (vec![(FLAKE_REF, "GITHUB:o/r")], FLAKE_REF, "unknown scheme"),
            (
                vec![(FLAKE_REF, "flake:nixpkgs")],
                FLAKE_REF,
                "no rule allows `flake:` refs",
            ),
            (
                vec![(FLAKE_REF, "nixpkgs")],
                FLAKE_REF,
                "no rule allows `flake:` refs",
            ),
            (
                vec![(FLAKE_REF, "github:o/r?host=evil.example")],
                FLAKE_REF,
                "allows host github.com, not evil.example",
            ),
            (
                vec![(FLAKE_REF, "path:/nix/store/../../etc")],
                FLAKE_REF,
                "no rule allows `path:` refs",
            ),
            (
                vec![
                    (FLAKE_REF, "github:other/r"),
                    ("csi.storage.k8s.io/pod.namespace", "team-a"),
                ],
                FLAKE_REF,
                "for namespace `team-a`",
            ),
            (
                vec![(STORE_PATHS, "/nix/store/../etc")],
                STORE_PATHS,
                "store path",
            ),
            (
                vec![(STORE_PATHS, &dotdot)],
                STORE_PATHS,
                "names a file inside a store path",
            ),
            (
                vec![(STORE_PATHS, "--option")],
                STORE_PATHS,
                "not under /nix/store/",
            ),
            (
                vec![(PACKAGES, "--option")],
                PACKAGES,
                "invalid package name",
            ),
            (vec![(PACKAGES, "curl")], PACKAGES, "no package set"),
            (
                vec![(STORE_PATHS, APP), (TIMEOUT, "1s\0")],
                TIMEOUT,
                "duration",
            ),
            (
                vec![(STORE_PATHS, APP), ("flakeref", "github:o/r")],
                "flakeref",
                "unknown volume attribute",
            ),
            (
                vec![(STORE_PATHS, APP), ("--option", "x")],
                "--option",
                "unknown volume attribute",
            ),
            (
                vec![(STORE_PATHS, APP), ("", "x")],
                "",
                "unknown volume attribute ``",
            ),
            (
                vec![(STORE_PATHS, APP), (&mib, "x")],
                "aaaa",
                "unknown volume attribute",
            ),
            (
                vec![(STORE_PATHS, APP), ("containix.dev/flake", "github:o/r")],
                "containix.dev/flake",
                "unknown volume attribute",
            ),
        ];
        for (pairs, attribute, needle) in refused {
            let shown: String = format!("{pairs:?}").chars().take(80).collect();
            let err = match parse(&pairs) {
                Err(err) => err,
                Ok(parsed) => parsed.check_policy(&policy).expect_err(&shown),
            };
            let message = err.to_string();
            assert!(message.contains(needle), "{shown}: {message}");
            assert!(
                message.contains(&format!("`{attribute}")),
                "{shown}: {message}"
            );
            assert!(message.len() < 1500, "{shown}: {} bytes", message.len());
            assert!(
                !message.chars().any(char::is_control),
                "{shown}: {message:?}"
            );
        }
        // Harmless: surrounding whitespace is trimmed; pod info is only read; an unknown or
        // malformed namespace gets the node-wide settings.
        let parsed = parse(&[(FLAKE_REF, " github:o/r\n")]).unwrap();
        assert_eq!(
            parsed.request.source,
            Source::Flake("github:o/r".parse().unwrap())
        );
        assert_eq!(parsed.check_policy(&policy), Ok(()));
        for namespace in ["team-b", "team-a\0", &mib, "kube-system\n--option"] {
            let parsed = parse(&[
                (FLAKE_REF, "github:other/r"),
                ("csi.storage.k8s.io/pod.namespace", namespace),
                ("csi.storage.k8s.io/pod.name", namespace),
            ])
            .unwrap();
            assert_eq!(parsed.check_policy(&policy), Ok(()), "{:.40}", namespace);
        }
        let trimmed = parse(&[
            (FLAKE_REF, "github:team-a/r"),
            ("csi.storage.k8s.io/pod.namespace", " team-a\n"),
        ])
        .unwrap();
        assert_eq!(trimmed.request.namespace.as_deref(), Some("team-a"));
        assert_eq!(trimmed.check_policy(&policy), Ok(()));
    }
}
