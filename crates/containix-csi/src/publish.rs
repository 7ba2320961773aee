//! Publishing and unpublishing a volume, independent of gRPC.
//!
//! Publish: validate the attributes against the node policy, resolve the closure within the
//! deadline, take the node's store view of it (shared with the shim's containers; the view
//! holds the GC root), plan the mounts, record the plan, mount, mark the record complete.
//! Any failure undoes what was done: nothing stays mounted, no record, no use of a view.
//! Unpublish undoes a record's mounts, view use and files, and succeeds when there is nothing
//! to undo.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use containix_core::assemble::closure_mount::{
    self, ClosureMountPlan, Mounter, VolumeMode, collect_bin_links,
};
use containix_core::assemble::store_facts::HostStore;
use containix_core::assemble::view::registry::StoreViews;
use containix_core::request::policy::NodePolicy;
use containix_core::request::volume_attributes::{POD_INFO_PREFIX, VolumeAttributes};
use containix_core::store::gc_roots::{GcRoots, MAX_CONSUMER_LEN};

use crate::closure_source::ClosureSource;
use crate::error::NodeError;
use crate::volume_state::{VolumeRecord, VolumeStore};

/// What NodePublishVolume asks for, validated for presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishRequest {
    /// The CO's volume id.
    pub volume_id: String,
    /// Where to publish.
    pub target_path: PathBuf,
    /// Whether the volume is read-only (else it gets a private writable overlay).
    pub readonly: bool,
    /// The volume attributes.
    pub attributes: BTreeMap<String, String>,
}

/// Usage figures of a published volume, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolumeUsage {
    /// What the volume can hold.
    pub total: u64,
    /// What it holds: the closure, plus the writes of a writable volume.
    pub used: u64,
    /// Room left for writes (zero for a read-only volume).
    pub available: u64,
}

/// Publishes and unpublishes volumes on this node.
pub struct Publisher<S> {
    policy: NodePolicy,
    source: S,
    mounter: Arc<dyn Mounter>,
    volumes: VolumeStore,
    roots: GcRoots,
    views: StoreViews,
    in_flight: Mutex<HashSet<String>>,
}

/// Marks a volume busy until dropped.
struct InFlight<'a> {
    set: &'a Mutex<HashSet<String>>,
    volume_id: String,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.set.lock().unwrap().remove(&self.volume_id);
    }
}

impl<S: ClosureSource> Publisher<S> {
    /// A publisher keeping its records and GC roots under `state_dir`.
    pub fn new(
        policy: NodePolicy,
        source: S,
        mounter: Arc<dyn Mounter>,
        state_dir: &Path,
    ) -> Result<Self, NodeError> {
        // The node's views, shared with the shim: the same directory and the same GC roots.
        let views = StoreViews::new(
            policy.view_dir(),
            GcRoots::new(&policy.state_dir),
            policy.store_view,
        );
        Ok(Self {
            policy,
            source,
            mounter,
            volumes: VolumeStore::open(state_dir.join("volumes"))?,
            roots: GcRoots::new(state_dir),
            views,
            in_flight: Mutex::default(),
        })
    }

    /// Lets go of the store views held for volumes that have no record: the plugin died
    /// between taking a volume's view and recording the volume. Run once at start, before
    /// serving.
    pub async fn release_orphaned_views(&self) -> Result<usize, NodeError> {
        let mut recorded = HashSet::new();
        for id in self.volumes.volume_ids()? {
            if let Some(record) = self.volumes.load(&id)? {
                recorded.insert(record.gc_consumer);
            }
        }
        let mut released = 0;
        for view in self.views.list()? {
            for user in view.users {
                if user.name.starts_with(CONSUMER_PREFIX) && !recorded.contains(&user.name) {
                    tracing::info!(
                        consumer = user.name,
                        view = view.id,
                        "releasing an orphaned view"
                    );
                    self.views.release(&user.name).await?;
                    released += 1;
                }
            }
        }
        Ok(released)
    }

    /// The volume records.
    pub fn volumes(&self) -> &VolumeStore {
        &self.volumes
    }

    /// The node policy.
    pub fn policy(&self) -> &NodePolicy {
        &self.policy
    }

    fn begin(&self, volume_id: &str) -> Result<InFlight<'_>, NodeError> {
        if !self.in_flight.lock().unwrap().insert(volume_id.to_owned()) {
            return Err(NodeError::Busy {
                volume_id: volume_id.to_owned(),
            });
        }
        Ok(InFlight {
            set: &self.in_flight,
            volume_id: volume_id.to_owned(),
        })
    }

    /// Publishes a volume; publishing the same volume at the same target again succeeds.
    pub async fn publish(&self, request: &PublishRequest) -> Result<(), NodeError> {
        let attributes = VolumeAttributes::parse(&request.attributes)?;
        attributes.check_policy(&self.policy)?;
        let _busy = self.begin(&request.volume_id)?;
        let volume = &request.volume_id;
        if let Some(record) = self.volumes.load(volume)? {
            if record.target_path != request.target_path {
                return Err(NodeError::Incompatible {
                    volume_id: volume.clone(),
                    how: format!("at another target, {:?}", record.target_path),
                });
            }
            if record.readonly != request.readonly
                || without_pod_info(&record.attributes) != without_pod_info(&request.attributes)
            {
                return Err(NodeError::Incompatible {
                    volume_id: volume.clone(),
                    how: "at this target with other attributes or another read-only mode".into(),
                });
            }
            if record.complete {
                tracing::info!(volume, "already published");
                return Ok(());
            }
            tracing::warn!(
                volume,
                "undoing an unfinished publish before publishing again"
            );
            self.undo(record).await?;
        }

        let pod = attributes.pod.qualified_name();
        tracing::info!(
            volume,
            pod = pod.as_deref().unwrap_or("-"),
            source = attributes.source_attribute(),
            readonly = request.readonly,
            "publishing"
        );
        // The resolver gives the request the same deadline; publishing as a whole keeps to it.
        let timeout = self
            .policy
            .scope(attributes.request.namespace.as_deref())
            .effective_timeout(attributes.request.timeout);
        let deadline = tokio::time::Instant::now() + timeout;
        let resolution = self
            .source
            .resolve(&attributes.request)
            .await
            .map_err(|source| NodeError::Resolve {
                attribute: attributes.source_attribute(),
                source: Box::new(source),
            })?;
        let consumer = gc_consumer(volume, pod.as_deref());
        // The node's store view of the closure (made now if no pod or volume uses it yet) holds
        // it: its GC root is taken over the resolution's connection, whose temp roots protect
        // the closure until then; the connection closes after.
        let (view, resolved) =
            tokio::time::timeout_at(deadline, self.views.acquire(resolution, &consumer))
                .await
                .map_err(|_| NodeError::Timeout {
                    step: "making the closure's store view",
                    after: timeout,
                })??;
        let closure = &resolved.closure;
        let mode = if request.readonly {
            VolumeMode::ReadOnly
        } else {
            VolumeMode::Writable(self.volumes.overlay_dirs(volume))
        };
        // A read-only volume binds the view once, whatever the closure's size. A writable one
        // takes new entries in `store/`, so its members are bound one by one into its overlay.
        let planned = collect_bin_links(&HostStore, closure, &resolved.roots).and_then(|links| {
            let target = &request.target_path;
            match mode {
                VolumeMode::ReadOnly => {
                    ClosureMountPlan::for_view(&view.store, &links, target, mode)
                }
                VolumeMode::Writable(_) => {
                    ClosureMountPlan::new(&HostStore, closure, &links, target, mode)
                }
            }
        });
        let plan = match planned {
            Ok(plan) => plan,
            Err(error) => {
                self.views.release(&consumer).await?;
                return Err(error.into());
            }
        };
        let mut record = VolumeRecord {
            volume_id: volume.clone(),
            target_path: request.target_path.clone(),
            readonly: request.readonly,
            attributes: request.attributes.clone(),
            pod: attributes.pod.clone(),
            roots: resolved.roots.clone(),
            closure_size: closure.len(),
            nar_size: closure.nar_size(),
            gc_consumer: consumer,
            plan,
            complete: false,
        };
        if let Err(error) = self.volumes.save(&record) {
            self.views.release(&record.gc_consumer).await?;
            return Err(error.into());
        }

        let result = async {
            let mounter = Arc::clone(&self.mounter);
            let plan = record.plan.clone();
            tokio::task::spawn_blocking(move || closure_mount::apply(&plan, mounter.as_ref()))
                .await
                .expect("mounting does not panic")?;
            record.complete = true;
            self.volumes.save(&record)?;
            Ok::<(), NodeError>(())
        }
        .await;
        match result {
            Ok(()) => {
                tracing::info!(
                    volume,
                    paths = record.closure_size,
                    nar_size = record.nar_size,
                    "published"
                );
                Ok(())
            }
            Err(error) => {
                tracing::warn!(volume, %error, "publish failed; undoing it");
                if let Err(cleanup) = self.undo(record).await {
                    tracing::error!(volume, %cleanup, "undoing a failed publish");
                }
                Err(error)
            }
        }
    }

    /// Unpublishes a volume; unknown volumes and targets already unpublished succeed.
    pub async fn unpublish(&self, volume_id: &str, target_path: &Path) -> Result<(), NodeError> {
        let _busy = self.begin(volume_id)?;
        let Some(record) = self.volumes.load(volume_id)? else {
            tracing::info!(volume = volume_id, "not published; nothing to unpublish");
            remove_empty_dir(target_path);
            return Ok(());
        };
        if record.target_path != target_path {
            tracing::warn!(
                volume = volume_id,
                published = ?record.target_path,
                asked = ?target_path,
                "unpublish of a target the volume is not published at; leaving it"
            );
            return Ok(());
        }
        self.undo(record).await?;
        tracing::info!(volume = volume_id, "unpublished");
        Ok(())
    }

    /// Undoes everything a record names: mounts, target directory, GC root, files, record.
    async fn undo(&self, record: VolumeRecord) -> Result<(), NodeError> {
        let mounter = Arc::clone(&self.mounter);
        let plan = record.plan.clone();
        tokio::task::spawn_blocking(move || closure_mount::unmount_all(&plan, mounter.as_ref()))
            .await
            .expect("unmounting does not panic")?;
        remove_empty_dir(&record.target_path);
        self.views.release(&record.gc_consumer).await?;
        // A volume published before store views held a GC root of its own.
        self.roots.release(&record.gc_consumer)?;
        self.volumes.remove(&record.volume_id)?;
        Ok(())
    }

    /// Usage of a published volume; `volume_path` must be where it is published.
    pub fn usage(&self, volume_id: &str, volume_path: &Path) -> Result<VolumeUsage, NodeError> {
        let not_found = || NodeError::VolumeNotFound {
            volume_id: volume_id.to_owned(),
            path: volume_path.display().to_string(),
        };
        let record = self.volumes.load(volume_id)?.ok_or_else(not_found)?;
        if !record.complete || record.target_path != volume_path {
            return Err(not_found());
        }
        let VolumeMode::Writable(dirs) = &record.plan.mode else {
            return Ok(VolumeUsage {
                total: record.nar_size,
                used: record.nar_size,
                available: 0,
            });
        };
        let io_error = |source| NodeError::Io {
            what: format!("measuring {:?}", dirs.upper),
            source,
        };
        let stat = nix::sys::statvfs::statvfs(&dirs.upper).map_err(|e| io_error(e.into()))?;
        let available = stat.blocks_available() * stat.fragment_size();
        let written = tree_size(&dirs.upper).map_err(io_error)?;
        let used = record.nar_size + written;
        Ok(VolumeUsage {
            total: used + available,
            used,
            available,
        })
    }
}

/// The GC root consumer of a volume: `csi-<pod namespace>_<pod name>-<volume>` when the pod is
/// known and the name fits (`nix-store --gc --print-roots` then shows the pod), else
/// `csi-<volume>`.
/// How the names of volumes' GC roots and view users begin (the shim's are container ids).
const CONSUMER_PREFIX: &str = "csi-";

fn gc_consumer(volume_id: &str, pod: Option<&str>) -> String {
    let volume = VolumeStore::file_stem(volume_id);
    let plain = format!("{CONSUMER_PREFIX}{volume}");
    let Some(pod) = pod else {
        return plain;
    };
    let pod: String = pod
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let named = format!("{CONSUMER_PREFIX}{pod}-{volume}");
    if named.len() <= MAX_CONSUMER_LEN {
        named
    } else if plain.len() <= MAX_CONSUMER_LEN {
        plain
    } else {
        format!("{CONSUMER_PREFIX}{}", VolumeStore::hashed_stem(volume_id))
    }
}

fn without_pod_info(attributes: &BTreeMap<String, String>) -> BTreeMap<&str, &str> {
    attributes
        .iter()
        .filter(|(key, _)| !key.starts_with(POD_INFO_PREFIX))
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect()
}

/// Removes a target directory the plugin created, if it is empty; anything else stays.
fn remove_empty_dir(path: &Path) {
    match std::fs::remove_dir(path) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => tracing::warn!(target = ?path, %err, "leaving the target directory"),
    }
}

/// Bytes of the regular files under `dir`, without following links.
fn tree_size(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let metadata = entry.metadata()?;
            if metadata.is_dir() {
                pending.push(entry.path());
            } else {
                total += metadata.len();
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use containix_core::assemble::closure_mount::SyscallMounter;
    use containix_core::request::container_request::Request;
    use containix_core::request::volume_attributes::VOLUME_CONTAINER;
    use containix_core::resolve::held_closure::HeldClosure;
    use containix_core::resolve::resolved::Resolved;
    use containix_core::resolve::{ResolveError, Step};
    use containix_core::store::gc_roots::{GcRootError, GcRoots};
    use containix_core::store::store_path::StorePath;
    use tonic::Code;

    use super::*;

    /// A closure that never resolves: the fake below only fails.
    enum NoClosure {}

    impl HeldClosure for NoClosure {
        fn resolved(&self) -> &Resolved {
            match *self {}
        }

        async fn hold(self, _: &GcRoots, _: &str) -> Result<Resolved, GcRootError> {
            match self {}
        }

        fn release(self) -> Resolved {
            match self {}
        }
    }

    /// A source whose deadline always passes while substituting.
    struct TimingOut;

    impl ClosureSource for TimingOut {
        type Closure = NoClosure;

        async fn resolve(&self, request: &Request) -> Result<NoClosure, ResolveError> {
            assert_eq!(request.container, VOLUME_CONTAINER);
            Err(ResolveError::Timeout {
                container: request.container.clone(),
                step: Step::Substituting(
                    StorePath::parse("/nix/store/0c1h5b3ldrb1d8jq6ln5ai3k06h3ipm8-hello-1.0")
                        .unwrap(),
                ),
                after: Duration::from_secs(7),
            })
        }
    }

    #[tokio::test]
    async fn a_failed_resolution_is_reported_with_its_attribute_and_leaves_nothing() {
        let state = tempfile::tempdir().unwrap();
        let publisher = Publisher::new(
            NodePolicy::default(),
            TimingOut,
            Arc::new(SyscallMounter),
            state.path(),
        )
        .unwrap();
        let target = state.path().join("target");
        let request = PublishRequest {
            volume_id: "v".into(),
            target_path: target.clone(),
            readonly: true,
            attributes: [("flakeRef".to_owned(), "github:org/app#hello".to_owned())].into(),
        };
        let error = publisher.publish(&request).await.unwrap_err();
        assert_eq!(error.code(), Code::DeadlineExceeded);
        assert!(
            error.to_string().starts_with(
                "volume attribute `flakeRef`: resolution did not finish within 7s; it was \
                 substituting /nix/store/"
            ),
            "{error}"
        );
        assert!(!target.exists());
        assert_eq!(publisher.volumes().load("v").unwrap(), None);
        assert!(!state.path().join("gcroots").exists());
    }
}
