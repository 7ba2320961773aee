//! The shim's part in each of containerd's actions: `start` (spawn or join the pod's shim),
//! `delete` (clean up after a dead shim) and the task service a serving shim runs.
//! [`crate::bootstrap`] decides which one a run of the binary performs.

use std::{collections::HashMap, path::PathBuf, sync::Arc};

use containerd_shim::{
    DeleteResponse, ExitSignal, Flags, StartOpts,
    asynchronous::{
        monitor::{monitor_subscribe, monitor_unsubscribe},
        spawn,
    },
    monitor::{Subject, Topic},
    publisher::RemotePublisher,
};
use tracing::{error, warn};

use crate::{
    container,
    containix_step::{ContainixStep, CoreStep},
    events::RemoteEvents,
    logging, runtime_options,
    spawner::{RuncSpawner, RuntimeConfig, Spawner},
    task::TaskService,
};

/// Annotations that put containers into one shim, in priority order (as containerd's runc
/// shim): an explicit group, else the CRI pod sandbox.
pub const GROUP_LABELS: [&str; 2] = [
    "io.containerd.runc.v2.group",
    "io.kubernetes.cri.sandbox-id",
];

/// The shim group of a container: every container of a pod shares one shim process.
pub fn grouping(id: &str, annotations: &HashMap<String, String>) -> String {
    GROUP_LABELS
        .iter()
        .find_map(|label| annotations.get(*label).filter(|v| !v.is_empty()))
        .cloned()
        .unwrap_or_else(|| id.to_owned())
}

/// The containix shim.
pub struct ShimService {
    id: String,
    namespace: String,
    bundle: String,
    exit: Arc<ExitSignal>,
    step: Arc<dyn ContainixStep>,
    spawner: Arc<dyn Spawner>,
}

impl ShimService {
    /// The shim for one run of the binary, with its logging installed (see [`logging`]).
    pub fn new(runtime_id: &str, args: &Flags) -> Self {
        logging::install(runtime_id, args);
        ShimService {
            id: args.id.clone(),
            namespace: args.namespace.clone(),
            bundle: args.bundle.clone(),
            exit: Arc::new(ExitSignal::default()),
            step: Arc::new(CoreStep::from_environment()),
            spawner: Arc::new(RuncSpawner),
        }
    }

    /// Spawns the pod's serving shim (or finds it serving) and returns its address.
    pub async fn start_shim(&mut self, mut opts: StartOpts) -> containerd_shim::Result<String> {
        // containerd runs `start` in the bundle directory.
        let spec = container::read_spec("").await?;
        let group = grouping(&opts.id, &spec.annotations().clone().unwrap_or_default());
        let options = runtime_options::start_options(&opts.extensions)
            .map_err(|e| containerd_shim::Error::InvalidArgument(e.to_string()))?;
        if !options.shim_cgroup.is_empty() {
            warn!(
                "ShimCgroup {:?} is ignored: the containix shim stays in containerd's cgroup",
                options.shim_cgroup
            );
        }
        // Without the options, `spawn` moves the shim into no cgroup (it only raises its OOM
        // score), as the warning says.
        opts.extensions.clear();
        let address = spawn(opts, &group, Vec::new()).await?;
        containerd_shim::util::write_str_to_file("address", &address).await?;
        Ok(address)
    }

    /// Cleans up after the container `-id` whose shim died: runc's state, the rootfs mount
    /// and the containix step's leftovers.
    pub async fn delete_shim(&mut self) -> containerd_shim::Result<DeleteResponse> {
        let bundle = if self.bundle.is_empty() {
            std::env::current_dir().map_err(|e| containerd_shim::Error::IoError {
                context: "find the bundle (current directory)".into(),
                err: e,
            })?
        } else {
            PathBuf::from(&self.bundle)
        };
        let options = containerd_shim::util::read_options(&bundle).await?;
        let binary = containerd_shim::util::read_runtime(&bundle)
            .await
            .unwrap_or_default();
        let config = RuntimeConfig::for_bundle(
            &binary,
            &options.root,
            &self.namespace,
            &bundle,
            options.systemd_cgroup,
        );
        match self.spawner.runtime(&config) {
            Ok(runtime) => {
                if let Err(e) = runtime.delete(&self.id, true).await {
                    warn!("failed to remove runc container {}: {e}", self.id);
                }
            }
            Err(e) => warn!("cannot run the OCI runtime to clean up {}: {e}", self.id),
        }
        container::unmount_rootfs(&bundle).await;
        if let Err(e) = self.step.cleanup(&self.id).await {
            warn!("containix cleanup of {} failed: {e}", self.id);
        }
        Ok(DeleteResponse {
            exit_status: 128 + 9,
            exited_at: Some(containerd_shim::util::timestamp()?).into(),
            ..Default::default()
        })
    }

    /// Waits until the task service asks the shim to exit.
    pub async fn wait(&mut self) {
        self.exit.wait().await;
    }

    /// The task service, publishing events through `publisher` and told of every exit.
    pub async fn create_task_service(&self, publisher: RemotePublisher) -> TaskService {
        let step = self.step.clone();
        tokio::spawn(async move { step.sweep().await });
        let events = RemoteEvents::new(publisher, self.namespace.clone());
        let task = TaskService::new(
            &self.namespace,
            self.spawner.clone(),
            self.step.clone(),
            events,
            self.exit.clone(),
        );
        match monitor_subscribe(Topic::Pid).await {
            Ok(mut exits) => {
                let task = task.clone();
                tokio::spawn(async move {
                    while let Some(event) = exits.rx.recv().await {
                        if let Subject::Pid(pid) = event.subject {
                            task.handle_exit(pid, event.exit_code).await;
                        }
                    }
                    monitor_unsubscribe(exits.id).await.unwrap_or_default();
                });
            }
            Err(e) => error!("cannot watch process exits: {e}"),
        }
        task
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_share_one_shim() {
        let mut annotations = HashMap::new();
        assert_eq!(grouping("c1", &annotations), "c1");
        annotations.insert("io.kubernetes.cri.sandbox-id".into(), "pod".into());
        assert_eq!(grouping("c1", &annotations), "pod");
        annotations.insert("io.containerd.runc.v2.group".into(), "group".into());
        assert_eq!(grouping("c1", &annotations), "group");
    }
}
