//! The part of a request that decides what a resolution does, as the shim hands it to a
//! detached worker: written to the in-flight directory as JSON, read back by the worker, and
//! hashed into the key that lets every pod asking for the same thing share one resolution.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::request::container_request::{PackageName, Request, Source};
use crate::request::flake_ref::FlakeInstallable;
use crate::store::store_path::StorePath;

/// What to resolve, in the annotations' own text forms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "value")]
pub enum WorkSource {
    /// A flake installable, canonical.
    Flake(String),
    /// Store paths, in the request's order.
    StorePaths(Vec<String>),
    /// Package names, in the request's order.
    Packages(Vec<String>),
}

/// A resolution to run detached from the request that asked for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkRequest {
    /// The container name errors name (the first pod's; pods of one workload share it).
    pub container: String,
    /// What to resolve.
    pub source: WorkSource,
    /// The Kubernetes namespace whose policy applies (its rules, build permission, deadlines).
    pub namespace: Option<String>,
    /// The Nix system it is resolved for.
    pub system: String,
    /// The resolution deadline the pod asked for, in seconds (the policy caps it).
    pub timeout_secs: Option<u64>,
}

impl WorkRequest {
    /// The work `request` asks for, on a node whose flakes evaluate for `system`.
    pub fn of(request: &Request, system: &str) -> Self {
        let source = match &request.source {
            Source::Flake(installable) => WorkSource::Flake(installable.to_string()),
            Source::StorePaths(paths) => {
                WorkSource::StorePaths(paths.iter().map(|p| p.as_str().to_owned()).collect())
            }
            Source::Packages(names) => {
                WorkSource::Packages(names.iter().map(|n| n.as_str().to_owned()).collect())
            }
        };
        Self {
            container: request.container.clone(),
            source,
            namespace: request.namespace.clone(),
            system: system.to_owned(),
            timeout_secs: request.timeout.map(|t| t.as_secs()),
        }
    }

    /// The request again; `None` if a value no longer parses (the file was changed by hand).
    pub fn to_request(&self) -> Option<Request> {
        let source = match &self.source {
            WorkSource::Flake(text) => Source::Flake(FlakeInstallable::parse(text).ok()?),
            WorkSource::StorePaths(paths) => Source::StorePaths(
                paths
                    .iter()
                    .map(|p| StorePath::parse(p).ok())
                    .collect::<Option<_>>()?,
            ),
            WorkSource::Packages(names) => Source::Packages(
                names
                    .iter()
                    .map(|n| PackageName::parse(n).ok())
                    .collect::<Option<_>>()?,
            ),
        };
        Some(Request {
            container: self.container.clone(),
            source,
            namespace: self.namespace.clone(),
            entrypoint: None,
            timeout: self.timeout_secs.map(Duration::from_secs),
        })
    }

    /// The key every pod asking for this work shares: a hash of the source, the namespace (its
    /// policy may differ) and the system (the deadline does not change what is resolved).
    pub fn key(&self) -> String {
        let mut hash = Sha256::new();
        hash.update(b"containix-inflight-v1\0");
        hash.update(self.system.as_bytes());
        hash.update(b"\0");
        hash.update(self.namespace.as_deref().unwrap_or("").as_bytes());
        hash.update(b"\0");
        match &self.source {
            WorkSource::Flake(text) => {
                hash.update(b"flake\0");
                hash.update(text.as_bytes());
            }
            WorkSource::StorePaths(paths) => {
                hash.update(b"store-paths\0");
                let mut sorted: Vec<&String> = paths.iter().collect();
                sorted.sort();
                for path in sorted {
                    hash.update(path.as_bytes());
                    hash.update(b"\0");
                }
            }
            WorkSource::Packages(names) => {
                hash.update(b"packages\0");
                for name in names {
                    hash.update(name.as_bytes());
                    hash.update(b"\0");
                }
            }
        }
        hash.finalize()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The work in a few words, for status lines and errors.
    pub fn describe(&self) -> String {
        match &self.source {
            WorkSource::Flake(text) => text.clone(),
            WorkSource::StorePaths(paths) if paths.len() == 1 => paths[0].clone(),
            WorkSource::StorePaths(paths) => format!("{} and {} more", paths[0], paths.len() - 1),
            WorkSource::Packages(names) => format!("packages {}", names.join(" ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(source: Source) -> Request {
        Request {
            container: "app".into(),
            source,
            namespace: None,
            entrypoint: None,
            timeout: Some(Duration::from_secs(90)),
        }
    }

    #[test]
    fn work_round_trips_and_keys_ignore_order_of_paths_only() {
        let a = StorePath::parse(&format!("/nix/store/{}-a", "a".repeat(32))).unwrap();
        let b = StorePath::parse(&format!("/nix/store/{}-b", "b".repeat(32))).unwrap();
        let ab = WorkRequest::of(
            &request(Source::StorePaths(vec![a.clone(), b.clone()])),
            "x86_64-linux",
        );
        let ba = WorkRequest::of(&request(Source::StorePaths(vec![b, a])), "x86_64-linux");
        assert_eq!(ab.key(), ba.key());
        assert_eq!(ab.key().len(), 32);
        let json = serde_json::to_string(&ab).unwrap();
        let back: WorkRequest = serde_json::from_str(&json).unwrap();
        assert_eq!(back.to_request().unwrap(), request(ab_source(&ab)));

        let flake = WorkRequest::of(
            &request(Source::Flake(
                FlakeInstallable::parse("github:org/app#x").unwrap(),
            )),
            "x86_64-linux",
        );
        assert_ne!(flake.key(), ab.key());
        let other_system = WorkRequest {
            system: "aarch64-linux".into(),
            ..flake.clone()
        };
        assert_ne!(flake.key(), other_system.key());
        assert_eq!(flake.describe(), "github:org/app#x");
    }

    fn ab_source(work: &WorkRequest) -> Source {
        work.to_request().unwrap().source
    }

    #[test]
    fn a_hand_edited_request_is_refused() {
        let work = WorkRequest {
            container: "app".into(),
            source: WorkSource::Flake("--option x y".into()),
            namespace: None,
            system: "x86_64-linux".into(),
            timeout_secs: None,
        };
        assert!(work.to_request().is_none());
    }
}
