//! The client against a scripted fake daemon: exact request bytes and hand-built replies at
//! protocol 1.34 (Nix 2.8), 1.35 (Lix, Nix 2.15), 1.37 and 1.38 (Nix 2.24+).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::io::{AsyncReadExt, BufReader, DuplexStream, ReadHalf, WriteHalf, duplex};

use super::activity::{ACTIVITY_COPY_PATH, ACTIVITY_COPY_PATHS, RESULT_PROGRESS};
use super::handshake::{WORKER_MAGIC_1, WORKER_MAGIC_2, send};
use super::stderr::*;
use super::testing::{encode_path_info, transcript};
use super::wire::{MAX_PATH_COUNT, WireReader, WireWriter};
use super::*;
use crate::store::closure_query::{ClosureQueryError, query_closure};
use crate::store::path_info::PathInfo;
use crate::store::store_path::StorePath;

const V34: ProtocolVersion = ProtocolVersion::new(1, 34);
const V35: ProtocolVersion = ProtocolVersion::new(1, 35);
const V37: ProtocolVersion = ProtocolVersion::new(1, 37);
const V38: ProtocolVersion = ProtocolVersion::new(1, 38);
const ALL: [ProtocolVersion; 4] = [V34, V35, V37, V38];

/// The daemon's end of a connection.
struct FakeDaemon {
    reader: WireReader<BufReader<ReadHalf<DuplexStream>>>,
    writer: WriteHalf<DuplexStream>,
}

impl FakeDaemon {
    /// Reads exactly the bytes `expected` holds and checks them.
    async fn expect(&mut self, expected: &WireWriter) {
        let mut got = vec![0u8; expected.as_bytes().len()];
        let inner = self.reader.get_mut();
        inner.read_exact(&mut got).await.expect("client bytes");
        assert_eq!(got, expected.as_bytes(), "client sent unexpected bytes");
    }

    async fn send(&mut self, bytes: &WireWriter) {
        send(&mut self.writer, bytes).await.expect("send to client");
    }

    /// Serves the daemon's side of the handshake at `version`.
    async fn handshake(&mut self, version: ProtocolVersion, trust: u64) {
        let mut hello = transcript();
        hello.u64(WORKER_MAGIC_1).u64(0x126);
        self.expect(&hello).await;
        let mut reply = transcript();
        reply.u64(WORKER_MAGIC_2).u64(version.to_wire());
        self.send(&reply).await;
        let negotiated = version.min(V38);
        if negotiated.at_least(38) {
            let mut features = transcript();
            features.u64(0);
            self.expect(&features).await;
            let mut ours = transcript();
            ours.strings(["mounted-ssh-store"]);
            self.send(&ours).await;
        }
        let mut settings = transcript();
        settings.u64(0).u64(0);
        self.expect(&settings).await;
        let mut end = transcript();
        if negotiated.at_least(33) {
            end.string("2.99.0");
        }
        if negotiated.at_least(35) {
            end.u64(trust);
        }
        end.u64(STDERR_NEXT).string("welcome\n").u64(STDERR_LAST);
        self.send(&end).await;
    }

    /// Answers `QueryPathInfo` requests from `store` until the client hangs up.
    async fn serve_path_infos(
        mut self,
        version: ProtocolVersion,
        store: BTreeMap<StorePath, PathInfo>,
    ) {
        while let Ok(op) = self.reader.u64("opcode").await {
            assert_eq!(op, 26);
            let path = self.reader.store_path("path").await.unwrap();
            let mut reply = transcript();
            reply.u64(STDERR_LAST);
            encode_path_info(&mut reply, store.get(&path), version);
            self.send(&reply).await;
        }
    }
}

/// A connected client and fake daemon; the socket buffer holds `buffer` bytes each way.
async fn connect(
    version: ProtocolVersion,
    buffer: usize,
) -> (DaemonClient<DuplexStream>, FakeDaemon) {
    let (client_end, daemon_end) = duplex(buffer);
    let (read, writer) = tokio::io::split(daemon_end);
    let mut daemon = FakeDaemon {
        reader: WireReader::new(BufReader::new(read)),
        writer,
    };
    let (client, ()) = tokio::join!(
        DaemonClient::from_stream(client_end),
        daemon.handshake(version, 1)
    );
    (client.unwrap(), daemon)
}

fn path(name: &str) -> StorePath {
    StorePath::parse(&format!("/nix/store/{}-{name}", "c".repeat(32))).unwrap()
}

fn info(name: &str, refs: &[&str]) -> PathInfo {
    PathInfo {
        path: path(name),
        deriver: Some(path(&format!("{name}.drv"))),
        nar_hash: format!("{:064x}", name.len()),
        nar_size: 1000 + name.len() as u64,
        references: refs.iter().map(|r| path(r)).collect(),
        registration_time: 1_700_000_000,
        ultimate: true,
        signatures: vec!["cache.example.org-1:c2lnbmF0dXJl".into()],
        content_address: None,
    }
}

fn request(op: u64) -> WireWriter {
    let mut w = transcript();
    w.u64(op);
    w
}

#[tokio::test]
async fn handshake_negotiates_each_supported_version() {
    for version in ALL.into_iter().chain([ProtocolVersion::new(1, 40)]) {
        let (client, _daemon) = connect(version, 4096).await;
        let info = client.info();
        assert_eq!(info.protocol, version.min(V38), "{version}");
        assert_eq!(info.daemon_protocol, version);
        assert_eq!(info.nix_version.as_deref(), Some("2.99.0"));
        let expected_trust = if version.at_least(35) {
            TrustStatus::Trusted
        } else {
            TrustStatus::Unknown
        };
        assert_eq!(client.trust(), expected_trust, "{version}");
        let features: &[&str] = if version.at_least(38) {
            &["mounted-ssh-store"]
        } else {
            &[]
        };
        assert_eq!(info.daemon_features, features);
        assert!(!client.is_broken());
    }
}

#[tokio::test]
async fn handshake_refuses_foreign_and_ancient_daemons() {
    for (magic, version, expected) in [
        (WORKER_MAGIC_2, 0x114, "supports 1.21 to 1.38"),
        (WORKER_MAGIC_2, 0x200, "speaks protocol 2.0"),
        (0x1234, 0x122, "daemon magic"),
    ] {
        let (client_end, mut daemon_end) = duplex(4096);
        let mut reply = transcript();
        reply.u64(magic).u64(version);
        send(&mut daemon_end, &reply).await.unwrap();
        let err = DaemonClient::from_stream(client_end).await.unwrap_err();
        assert!(err.to_string().contains(expected), "{err}");
    }
}

#[tokio::test]
async fn query_path_info_at_each_version() {
    for version in ALL {
        let (mut client, mut daemon) = connect(version, 4096).await;
        let present = info("hello", &["hello", "glibc"]);
        let absent = path("absent");
        let (got, ()) = tokio::join!(client.query_path_info(&present.path), async {
            let mut req = request(26);
            req.store_path(&present.path);
            daemon.expect(&req).await;
            let mut reply = transcript();
            reply.u64(STDERR_LAST);
            encode_path_info(&mut reply, Some(&present), version);
            daemon.send(&reply).await;
        });
        assert_eq!(got.unwrap().as_ref(), Some(&present), "{version}");
        let (got, ()) = tokio::join!(client.query_path_info(&absent), async {
            let mut req = request(26);
            req.store_path(&absent);
            daemon.expect(&req).await;
            let mut reply = transcript();
            reply.u64(STDERR_LAST).u64(0);
            daemon.send(&reply).await;
        });
        assert_eq!(got.unwrap(), None);
        assert!(!client.is_broken());
    }
}

#[tokio::test]
async fn simple_operations_send_exact_requests() {
    for version in [V34, V38] {
        let (mut client, mut daemon) = connect(version, 4096).await;
        let p = path("hello");
        let (valid, ()) = tokio::join!(client.is_valid_path(&p), async {
            let mut req = request(1);
            req.store_path(&p);
            daemon.expect(&req).await;
            let mut reply = transcript();
            reply.u64(STDERR_LAST).u64(1);
            daemon.send(&reply).await;
        });
        assert!(valid.unwrap());

        let asked = [path("a"), path("b")];
        let (valid, ()) = tokio::join!(client.query_valid_paths(&asked, false), async {
            let mut req = request(31);
            req.store_paths(&asked).u64(0);
            daemon.expect(&req).await;
            let mut reply = transcript();
            reply.u64(STDERR_LAST).store_paths([&asked[1]]);
            daemon.send(&reply).await;
        });
        assert_eq!(valid.unwrap(), BTreeSet::from([path("b")]));

        for (op, action) in [(10u64, "ensure"), (11, "temp root")] {
            let (done, ()) = tokio::join!(
                async {
                    match action {
                        "ensure" => client.ensure_path(&p).await,
                        _ => client.add_temp_root(&p).await,
                    }
                },
                async {
                    let mut req = request(op);
                    req.store_path(&p);
                    daemon.expect(&req).await;
                    let mut reply = transcript();
                    reply.u64(STDERR_LAST).u64(1);
                    daemon.send(&reply).await;
                }
            );
            done.unwrap();
        }

        let link = std::path::Path::new("/var/lib/containix/roots/app");
        let (done, ()) = tokio::join!(client.add_indirect_root(link), async {
            let mut req = request(12);
            req.string("/var/lib/containix/roots/app");
            daemon.expect(&req).await;
            let mut reply = transcript();
            reply.u64(STDERR_LAST).u64(1);
            daemon.send(&reply).await;
        });
        done.unwrap();
        let err = client
            .add_indirect_root(std::path::Path::new("relative/link"))
            .await
            .unwrap_err();
        assert!(!err.is_connection_lost(), "{err}");

        let (roots, ()) = tokio::join!(client.find_roots(), async {
            daemon.expect(&request(14)).await;
            let mut reply = transcript();
            reply
                .u64(STDERR_LAST)
                .u64(1)
                .string("{temp:42}")
                .store_path(&p);
            daemon.send(&reply).await;
        });
        assert_eq!(
            roots.unwrap(),
            [GcRoot {
                link: "{temp:42}".into(),
                path: p.clone()
            }]
        );

        let drv = DerivedPath::built(path("hello.drv"), ["out"]).unwrap();
        let (missing, ()) = tokio::join!(client.query_missing(std::slice::from_ref(&drv)), async {
            let mut req = request(40);
            req.strings([drv.to_string()]);
            daemon.expect(&req).await;
            let mut reply = transcript();
            reply.u64(STDERR_LAST);
            reply
                .store_paths([&path("hello.drv")])
                .u64(0)
                .u64(0)
                .u64(0)
                .u64(0);
            daemon.send(&reply).await;
        });
        assert_eq!(
            missing.unwrap().will_build,
            BTreeSet::from([path("hello.drv")])
        );

        let mut options = DaemonOptions {
            use_substitutes: false,
            ..DaemonOptions::default()
        };
        options
            .overrides
            .insert("substituters".into(), String::new());
        let (done, ()) = tokio::join!(client.set_options(&options), async {
            let mut req = request(19);
            for value in [0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0] {
                req.u64(value);
            }
            req.u64(1).string("substituters").string("");
            daemon.expect(&req).await;
            daemon.send(transcript().u64(STDERR_LAST)).await;
        });
        done.unwrap();
        assert!(!client.is_broken());
    }
}

#[tokio::test]
async fn build_results_decode_per_version() {
    for version in [V34, V37] {
        let (mut client, mut daemon) = connect(version, 4096).await;
        let drv = DerivedPath::built(path("app.drv"), ["out"]).unwrap();
        let opaque = DerivedPath::Opaque(path("src"));
        let both = [drv.clone(), opaque.clone()];
        let (results, ()) = tokio::join!(
            client.build_paths_with_results(&both, BuildMode::Normal),
            async {
                let mut req = request(46);
                req.strings([drv.to_string(), opaque.to_string()]).u64(0);
                daemon.expect(&req).await;
                let mut reply = transcript();
                reply.u64(STDERR_LAST).u64(2);
                reply.string(&drv.to_string()).u64(0).string("");
                reply.u64(1).u64(0).u64(100).u64(105);
                if version.at_least(37) {
                    reply.u64(1).u64(1_500_000).u64(0);
                }
                reply
                    .u64(1)
                    .string("sha256:abcd!out")
                    .string("{\"outPath\":\"x\"}");
                reply
                    .string(&opaque.to_string())
                    .u64(3)
                    .string("builder failed");
                reply.u64(0).u64(0).u64(0).u64(0);
                if version.at_least(37) {
                    reply.u64(0).u64(0);
                }
                reply.u64(0);
                daemon.send(&reply).await;
            }
        );
        let results = results.unwrap();
        assert_eq!(results.len(), 2);
        let (built_path, built) = &results[0];
        assert_eq!(built_path, &drv);
        assert_eq!(built.status, BuildStatus::Built);
        assert_eq!(
            (built.times_built, built.start_time, built.stop_time),
            (1, 100, 105)
        );
        let cpu = version.at_least(37).then(|| Duration::from_millis(1500));
        assert_eq!(built.cpu_user, cpu);
        assert_eq!(built.cpu_system, None);
        assert_eq!(
            built.built_outputs["sha256:abcd!out"],
            "{\"outPath\":\"x\"}"
        );
        assert_eq!(results[1].1.status, BuildStatus::PermanentFailure);
        assert_eq!(results[1].1.error_msg, "builder failed");
        assert!(!client.is_broken());
    }
}

#[tokio::test]
async fn operations_newer_than_the_connection_are_refused_locally() {
    let (mut client, _daemon) = connect(ProtocolVersion::new(1, 30), 4096).await;
    let err = client
        .build_paths_with_results(&[DerivedPath::Opaque(path("x"))], BuildMode::Normal)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("needs daemon protocol 1.34"),
        "{err}"
    );
    assert!(!client.is_broken());
}

fn daemon_error(message: &str) -> WireWriter {
    let mut w = transcript();
    w.u64(STDERR_ERROR)
        .string("Error")
        .u64(0)
        .string("Error")
        .string(message);
    w.u64(0).u64(0);
    w
}

#[tokio::test]
async fn error_before_work_leaves_the_connection_broken() {
    for version in ALL {
        let (mut client, mut daemon) = connect(version, 4096).await;
        let p = path("x");
        let (result, ()) = tokio::join!(client.query_path_info(&p), async {
            let mut reply = daemon_error("error: unexpected opcode");
            reply
                .u64(STDERR_ERROR)
                .string("Error")
                .u64(0)
                .string("Error");
            reply.string("error: unexpected opcode").u64(0).u64(0);
            daemon.send(&reply).await;
        });
        drop(daemon);
        let err = result.unwrap_err();
        assert_eq!(err.daemon_message(), Some("error: unexpected opcode"));
        assert!(err.is_connection_lost(), "{version}");
        assert!(client.is_broken());
        assert!(matches!(
            client.is_valid_path(&p).await,
            Err(DaemonError::Broken)
        ));
    }
}

#[tokio::test]
async fn error_after_work_keeps_the_connection_usable() {
    for version in [ProtocolVersion::new(1, 25), V34, V35, V38] {
        let (mut client, mut daemon) = connect(version, 4096).await;
        let drv = DerivedPath::all_outputs(path("fail.drv")).unwrap();
        let (result, ()) = tokio::join!(
            client.build_paths(std::slice::from_ref(&drv), BuildMode::Normal),
            async {
                // Before 1.30 "all outputs" is the bare derivation path.
                let wire_path = if version.at_least(30) {
                    drv.to_string()
                } else {
                    path("fail.drv").to_string()
                };
                let mut req = request(9);
                req.strings([wire_path]).u64(0);
                daemon.expect(&req).await;
                let mut reply = transcript();
                reply.u64(STDERR_NEXT).string("building...\n");
                if version.at_least(26) {
                    reply
                        .u64(STDERR_ERROR)
                        .string("Error")
                        .u64(0)
                        .string("Error");
                    reply.string("builder for 'fail.drv' failed").u64(0).u64(0);
                } else {
                    reply
                        .u64(STDERR_ERROR)
                        .string("builder for 'fail.drv' failed")
                        .u64(100);
                }
                daemon.send(&reply).await;
            }
        );
        let err = result.unwrap_err();
        assert_eq!(
            err.daemon_message(),
            Some("builder for 'fail.drv' failed"),
            "{version}"
        );
        assert!(!err.is_connection_lost());
        assert!(!client.is_broken());
        let p = path("ok");
        let (valid, ()) = tokio::join!(client.is_valid_path(&p), async {
            let mut req = request(1);
            req.store_path(&p);
            daemon.expect(&req).await;
            daemon.send(transcript().u64(STDERR_LAST).u64(0)).await;
        });
        assert!(!valid.unwrap());
    }
}

#[tokio::test]
async fn log_lines_and_activities_become_progress() {
    let (mut client, mut daemon) = connect(V34, 4096).await;
    let progress = client.progress();
    let drv = DerivedPath::all_outputs(path("app.drv")).unwrap();
    let (result, ()) = tokio::join!(
        client.build_paths(std::slice::from_ref(&drv), BuildMode::Normal),
        async {
            let mut req = request(9);
            req.strings([drv.to_string()]).u64(0);
            daemon.expect(&req).await;
            let mut t = transcript();
            t.u64(STDERR_NEXT)
                .string("these 1 derivations will be built:\n");
            t.u64(STDERR_START_ACTIVITY)
                .u64(7)
                .u64(0)
                .u64(ACTIVITY_COPY_PATHS);
            t.string("").u64(0).u64(0);
            t.u64(STDERR_RESULT).u64(7).u64(RESULT_PROGRESS).u64(4);
            t.u64(0).u64(2).u64(0).u64(5).u64(0).u64(0).u64(0).u64(0);
            t.u64(STDERR_START_ACTIVITY)
                .u64(8)
                .u64(0)
                .u64(ACTIVITY_COPY_PATH);
            t.string("copying path '/nix/store/x'").u64(0).u64(7);
            t.u64(STDERR_RESULT).u64(8).u64(RESULT_PROGRESS).u64(2);
            t.u64(0).u64(4096).u64(0).u64(8192);
            t.u64(STDERR_START_ACTIVITY).u64(9).u64(0).u64(4242);
            t.string("something new").u64(1).u64(0).u64(3).u64(0);
            t.u64(STDERR_RESULT).u64(9).u64(4343).u64(0);
            t.u64(STDERR_STOP_ACTIVITY).u64(9);
            t.u64(STDERR_LAST).u64(1);
            daemon.send(&t).await;
        }
    );
    result.unwrap();
    assert_eq!(
        *progress.borrow(),
        Progress {
            paths_done: 2,
            paths_expected: 5,
            bytes_done: 4096,
            bytes_expected: 8192,
            current_activity: Some("copying path '/nix/store/x'".into()),
            running_activities: 2,
        }
    );
}

#[tokio::test]
async fn oversized_lengths_are_refused_and_break_the_connection() {
    let (mut client, mut daemon) = connect(V34, 4096).await;
    let asked = [path("a")];
    let (result, ()) = tokio::join!(client.query_valid_paths(&asked, false), async {
        daemon
            .send(transcript().u64(STDERR_LAST).u64(MAX_PATH_COUNT + 1))
            .await;
    });
    let err = result.unwrap_err();
    assert!(err.to_string().contains("valid paths of 1048577"), "{err}");
    assert!(client.is_broken());
    assert!(matches!(
        client.find_roots().await,
        Err(DaemonError::Broken)
    ));
}

#[tokio::test]
async fn pipelined_queries_through_a_tiny_buffer_do_not_deadlock() {
    // 3000 requests of ~72 bytes through a 512-byte pipe: the writer must block many times
    // while the reader drains replies.
    let (mut client, daemon) = connect(V34, 512).await;
    let names: Vec<String> = (0..3000).map(|i| format!("p{i}")).collect();
    let store: BTreeMap<StorePath, PathInfo> = names
        .iter()
        .filter(|n| !n.ends_with('7'))
        .map(|n| (path(n), info(n, &[])))
        .collect();
    let server = tokio::spawn(daemon.serve_path_infos(V34, store.clone()));
    let paths: Vec<StorePath> = names.iter().map(|n| path(n)).collect();
    let infos = client.query_path_infos(&paths).await.unwrap();
    assert_eq!(infos.len(), paths.len());
    for (path, got) in paths.iter().zip(&infos) {
        assert_eq!(got.as_ref(), store.get(path));
    }
    assert!(!client.is_broken());
    drop(client);
    server.await.unwrap();
}

#[tokio::test]
async fn closures_are_walked_level_by_level() {
    let (mut client, daemon) = connect(V37, 4096).await;
    let store: BTreeMap<StorePath, PathInfo> = [
        info("app", &["app", "lib", "cfg"]),
        info("cfg", &["lib"]),
        info("lib", &["libc"]),
        info("libc", &[]),
        info("tool", &["libc"]),
        info("broken", &["gone"]),
        info("unrelated", &[]),
    ]
    .into_iter()
    .map(|i| (i.path.clone(), i))
    .collect();
    let server = tokio::spawn(daemon.serve_path_infos(V37, store));
    let closure = query_closure(&mut client, &[path("tool"), path("app")])
        .await
        .unwrap();
    let names: Vec<&str> = closure.paths().map(|p| p.name()).collect();
    assert_eq!(names, ["app", "cfg", "lib", "libc", "tool"]);
    assert_eq!(closure.roots(), [path("tool"), path("app")]);
    assert_eq!(closure.get(&path("lib")).unwrap(), &info("lib", &["libc"]));

    let err = query_closure(&mut client, &[path("app"), path("nope")])
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClosureQueryError::InvalidRoot(ref p) if *p == path("nope")),
        "{err}"
    );
    let err = query_closure(&mut client, &[path("broken")])
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{} refers to {}, which is not valid in the Nix store",
            path("broken"),
            path("gone")
        )
    );
    assert!(!client.is_broken());
    drop(client);
    server.await.unwrap();
}

#[tokio::test]
async fn a_cancelled_pipeline_leaves_the_connection_broken() {
    let (mut client, mut daemon) = connect(V34, 4096).await;
    let paths = [path("a"), path("b")];
    tokio::select! {
        _ = client.query_path_infos(&paths) => panic!("the fake daemon never replies"),
        op = daemon.reader.u64("opcode") => assert_eq!(op.unwrap(), 26),
    }
    assert!(client.is_broken());
    assert!(matches!(
        client.is_valid_path(&paths[0]).await,
        Err(DaemonError::Broken)
    ));
}

#[tokio::test]
async fn failed_operations_carry_the_problems_the_daemon_logged() {
    for version in [ProtocolVersion::new(1, 25), V34, V38] {
        let (mut client, mut daemon) = connect(version, 4096).await;
        let p = path("hello");
        let (result, ()) = tokio::join!(client.ensure_path(&p), async {
            let mut req = request(10);
            req.store_path(&p);
            daemon.expect(&req).await;
            let mut reply = transcript();
            reply
                .u64(STDERR_NEXT)
                .string("querying info about missing paths\n");
            for attempt in 0..12 {
                reply.u64(STDERR_NEXT).string(&format!(
                    "\x1b[35;1mwarning:\x1b[0m error: unable to download \
                     'http://cache/nix-cache-info': Couldn't connect to server (7); attempt {attempt}; \
                     retrying in {} ms\n",
                    250 << attempt
                ));
            }
            reply.u64(STDERR_NEXT).string(&format!(
                "warning: substituter 'http://cache' does not have a valid signature for path '{p}'\n"
            ));
            let last = format!("path '{p}' does not exist and cannot be created");
            if version.at_least(26) {
                reply
                    .u64(STDERR_ERROR)
                    .string("Error")
                    .u64(0)
                    .string("Error");
                reply.string(&last).u64(0).u64(0);
            } else {
                reply.u64(STDERR_ERROR).string(&last).u64(1);
            }
            daemon.send(&reply).await;
        });
        let err = result.unwrap_err();
        let tail = err.log_tail();
        assert_eq!(tail.len(), stderr::LOG_TAIL_LINES, "{version}: {tail:?}");
        assert!(
            tail[0].starts_with("warning: error: unable to download"),
            "{tail:?}"
        );
        assert!(
            tail[0].ends_with("attempt 5; retrying in 8000 ms"),
            "{tail:?}"
        );
        assert_eq!(
            tail.last().unwrap(),
            &format!(
                "warning: substituter 'http://cache' does not have a valid signature for path '{p}'"
            )
        );
        let shown = err.to_string();
        assert!(
            shown.starts_with(&format!(
                "the Nix daemon reported: path '{p}' does not exist and cannot be created \
                 (earlier in the operation: warning: error: unable to download"
            )),
            "{shown}"
        );
        assert!(shown.contains("does not have a valid signature"), "{shown}");
        assert!(!err.is_connection_lost(), "{version}");

        // The next operation starts with an empty tail.
        let (result, ()) = tokio::join!(client.ensure_path(&p), async {
            let mut req = request(10);
            req.store_path(&p);
            daemon.expect(&req).await;
            let mut reply = transcript();
            reply.u64(STDERR_NEXT).string("copying path\n");
            if version.at_least(26) {
                reply
                    .u64(STDERR_ERROR)
                    .string("Error")
                    .u64(0)
                    .string("Error");
                reply.string("gone").u64(0).u64(0);
            } else {
                reply.u64(STDERR_ERROR).string("gone").u64(1);
            }
            daemon.send(&reply).await;
        });
        let err = result.unwrap_err();
        assert!(err.log_tail().is_empty(), "{:?}", err.log_tail());
        assert_eq!(err.to_string(), "the Nix daemon reported: gone");
    }
}
