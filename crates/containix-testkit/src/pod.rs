//! A pod driven through CRI the way a kubelet drives one: run the sandbox, create and start
//! containers, wait for them, remove everything. Shared by the tests and benchmarks that need
//! pods on the test node.

use std::path::PathBuf;
use std::time::Duration;

use crate::containerd::Containerd;
use crate::cri::{ContainerLog, ContainerSpec, CriClient, PodSandboxSpec, proto};

/// A running pod sandbox on a test node.
pub struct CriPod {
    /// The node's CRI client.
    pub cri: CriClient,
    /// The sandbox id.
    pub id: String,
    /// The sandbox config, which every CreateContainer repeats.
    pub config: proto::PodSandboxConfig,
    /// Where its containers' CRI logs go.
    pub log_dir: PathBuf,
}

impl CriPod {
    /// Runs sandbox `spec` (its log directory is set here) with runtime `handler` (`""` for
    /// containerd's default, runc).
    pub async fn run(
        node: &Containerd,
        spec: PodSandboxSpec,
        handler: &str,
    ) -> Result<CriPod, String> {
        let name = spec.build().metadata.map(|m| m.name).unwrap_or_default();
        let log_dir = node.create_pod_log_dir(&name).map_err(|e| e.to_string())?;
        let config = spec.log_directory(&log_dir).build();
        let cri = node.cri();
        let id = cri
            .run_pod_sandbox(&config, handler)
            .await
            .map_err(|e| e.to_string())?;
        Ok(CriPod {
            cri,
            id,
            config,
            log_dir,
        })
    }

    /// Creates and starts `spec`; the error of whichever call failed, as text (what a kubelet
    /// puts in the pod's events).
    pub async fn start(&self, spec: &ContainerSpec) -> Result<String, String> {
        let id = self
            .cri
            .create_container(&self.id, &spec.build(), &self.config)
            .await
            .map_err(|e| e.to_string())?;
        self.cri
            .start_container(&id)
            .await
            .map_err(|e| e.to_string())?;
        Ok(id)
    }

    /// Runs `spec` to completion within `limit`: its final status and its log.
    pub async fn run_to_exit(
        &self,
        spec: &ContainerSpec,
        limit: Duration,
    ) -> Result<(proto::ContainerStatus, ContainerLog), String> {
        let id = self.start(spec).await?;
        let status = self
            .cri
            .wait_for_exit(&id, limit)
            .await
            .map_err(|e| e.to_string())?;
        let log = ContainerLog::read(&self.log_dir.join(spec.relative_log_path()))
            .await
            .map_err(|e| e.to_string())?;
        Ok((status, log))
    }

    /// What a kubelet does when the pod goes away: stop and remove every container (waiting
    /// for each exit to be recorded), then the sandbox.
    pub async fn remove(self, limit: Duration) -> Result<(), String> {
        let error = |e: crate::cri::CriError| e.to_string();
        for container in self
            .cri
            .list_containers(Some(&self.id))
            .await
            .map_err(error)?
        {
            self.cri
                .stop_container(&container.id, 0)
                .await
                .map_err(error)?;
            self.cri
                .wait_for_exit(&container.id, limit)
                .await
                .map_err(error)?;
            self.cri
                .remove_container(&container.id)
                .await
                .map_err(error)?;
        }
        self.cri.stop_pod_sandbox(&self.id).await.map_err(error)?;
        self.cri.remove_pod_sandbox(&self.id).await.map_err(error)
    }
}
