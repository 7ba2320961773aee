//! The task service under both of containerd's names for it: `containerd.task.v2.Task`, which
//! containerd 1.6 and 1.7 call (and 2.x for a shim announcing v2), and `containerd.task.v3.Task`,
//! the name containerd 2.0 gave the same service. The two `shim.proto` files differ only in
//! their package name, so every request and reply is the same on the wire and one
//! implementation answers both.

use std::{collections::HashMap, sync::Arc};

use containerd_shim::{
    Task,
    protos::{shim_async::create_task, ttrpc::r#async::Service},
};

/// The task service's name in task API v2.
pub const TASK_V2: &str = "containerd.task.v2.Task";
/// The task service's name in task API v3 (the name the generated code registers).
pub const TASK_V3: &str = "containerd.task.v3.Task";

/// ttrpc's dispatch table for `task`, keyed by service name, with an entry under each name.
pub fn task_services(task: Arc<dyn Task + Send + Sync>) -> HashMap<String, Service> {
    let mut services = create_task(task.clone());
    // ttrpc keys a table by the full service name and its methods by their bare names
    // (`Create`, `Wait`, ...), so the second table, renamed, serves the v2 name.
    services.extend(
        create_task(task)
            .into_values()
            .map(|service| (TASK_V2.to_owned(), service)),
    );
    services
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use async_trait::async_trait;
    use containerd_shim::{
        TtrpcContext, TtrpcResult,
        api::{ConnectRequest, ConnectResponse},
        protos::{
            protobuf::Message,
            ttrpc::{
                Request,
                r#async::{Client, Server, transport::Listener},
            },
        },
    };

    use super::*;

    /// A task service that answers `Connect` with its own pid field set to 42.
    struct Stub;

    #[async_trait]
    impl Task for Stub {
        async fn connect(
            &self,
            _ctx: &TtrpcContext,
            req: ConnectRequest,
        ) -> TtrpcResult<ConnectResponse> {
            Ok(ConnectResponse {
                shim_pid: 42,
                version: req.id,
                ..Default::default()
            })
        }
    }

    #[test]
    fn both_names_map_to_the_same_methods() {
        let services = task_services(Arc::new(Stub));
        let names: BTreeSet<&str> = services.keys().map(String::as_str).collect();
        assert_eq!(names, BTreeSet::from([TASK_V2, TASK_V3]));
        let methods =
            |name: &str| -> BTreeSet<String> { services[name].methods.keys().cloned().collect() };
        assert_eq!(methods(TASK_V2), methods(TASK_V3));
        for method in [
            "Create", "Start", "Delete", "Wait", "Kill", "Shutdown", "Connect",
        ] {
            assert!(methods(TASK_V2).contains(method), "{method}");
        }
    }

    /// A ttrpc call by service name, as containerd's generated v2 and v3 clients make it.
    async fn connect(client: &Client, service: &str) -> ConnectResponse {
        let request = Request {
            service: service.into(),
            method: "Connect".into(),
            payload: ConnectRequest {
                id: service.into(),
                ..Default::default()
            }
            .write_to_bytes()
            .unwrap(),
            timeout_nano: 5_000_000_000,
            ..Default::default()
        };
        let response = client.request(request).await.unwrap();
        ConnectResponse::parse_from_bytes(&response.payload).unwrap()
    }

    #[tokio::test]
    async fn a_server_answers_under_both_names() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("shim.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let mut server = Server::new()
            .add_listener(Listener::try_from(listener).unwrap())
            .register_service(task_services(Arc::new(Stub)));
        server.start().await.unwrap();
        let address = format!("unix://{}", socket.display());
        let client = Client::connect(&address).await.unwrap();
        for service in [TASK_V2, TASK_V3] {
            let response = connect(&client, service).await;
            assert_eq!(
                (response.shim_pid, response.version.as_str()),
                (42, service)
            );
        }
        let unknown = Request {
            service: "containerd.task.v1.Task".into(),
            method: "Connect".into(),
            ..Default::default()
        };
        assert!(client.request(unknown).await.is_err());
        server.shutdown().await.unwrap();
    }
}
