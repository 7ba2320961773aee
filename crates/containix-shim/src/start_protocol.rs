//! The `start` handshake: what containerd hands `containerd-shim-containix-v1 start` and the
//! reply each containerd version understands. Pure: the effectful run is in [`crate::bootstrap`].
//!
//! containerd speaks two forms of it:
//! - **Legacy** (1.6 to 2.2): flags, the `TTRPC_ADDRESS`/`GRPC_ADDRESS` environment, and the
//!   runtime options as a protobuf `Any` on stdin (1.6 and later). The reply is read as text:
//!   1.6 takes it as the socket address; 1.7 to 2.2 first try JSON
//!   (`{"version":..,"address":..,"protocol":..}`) and take anything else as the address of a
//!   task API v2 shim. 1.6 cannot read JSON, and 1.7 refuses a version above 2.
//! - **Bootstrap** (2.3 and later): a `BootstrapParams` message on stdin (the flags and
//!   environment are still passed, deprecated), and a `BootstrapResult` message back.
//!
//! The shim announces task API v2 in both forms: the bare address to every legacy caller, and
//! `version = 2` in a `BootstrapResult`. That is what containerd 1.6 and 1.7 need, and on 2.x
//! it keeps containerd on the code path it uses for a v2 shim, the one the test matrix runs on
//! 2.1.9. With v3, containerd 2.x stops shutting a shim down after a sandboxed container's
//! delete and leaves that to the sandbox controller; announcing v3 to 2.1.9 as a trial, the
//! suite passed but for `containix_pod`'s killed-shim test, whose pod left its containix state
//! behind. The task service itself is served under both names ([`crate::task_services`]).

use containerd_shim::{
    Flags, StartOpts,
    bootstrap::{BootstrapParams, BootstrapResult, Extension},
    protos::protobuf::{Message, well_known_types::any::Any},
};

/// The task API version the shim announces.
pub const ANNOUNCED_TASK_API: i32 = 2;
/// The transport the shim serves the task API over.
const PROTOCOL: &str = "ttrpc";

/// Which form of the handshake containerd used, which decides the form of the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartProtocol {
    /// containerd 1.6 to 2.2: flags, environment, options on stdin; a text reply.
    Legacy,
    /// containerd 2.3 and later: `BootstrapParams` on stdin, `BootstrapResult` on stdout.
    Bootstrap,
}

/// The addresses the legacy handshake passes in the environment.
#[derive(Debug, Default, Clone)]
pub struct LegacyEnv {
    /// `TTRPC_ADDRESS`: containerd's ttrpc socket, where the shim publishes events.
    pub ttrpc_address: String,
    /// `GRPC_ADDRESS`: containerd's gRPC socket, when `-address` is not given.
    pub grpc_address: String,
}

/// What containerd asked of `start`, in the form it asked it. `input` is all of stdin. Fails
/// when the parameters name another shim or leave out containerd's ttrpc address (the serving
/// shim needs it, and its own errors reach nobody). Pure.
pub fn start_options(
    input: &[u8],
    flags: &Flags,
    env: LegacyEnv,
) -> Result<(StartOpts, StartProtocol), String> {
    let (mut params, protocol) = match bootstrap_params(input, flags)? {
        Some(params) => (params, StartProtocol::Bootstrap),
        None => (legacy_params(input, flags, env)?, StartProtocol::Legacy),
    };
    if flags.debug {
        // `-debug` accompanies both forms; it can only make the log more verbose.
        let debug = containerd_shim::bootstrap::LogLevel::LOG_LEVEL_DEBUG;
        if params.log_level.value() > debug as i32 {
            params.log_level = debug.into();
        }
    }
    if params.containerd_ttrpc_address.is_empty() {
        return Err(match protocol {
            StartProtocol::Bootstrap => "start: BootstrapParams carry no containerd_ttrpc_address",
            StartProtocol::Legacy => "start: the TTRPC_ADDRESS environment variable is not set",
        }
        .to_owned());
    }
    Ok((params.into(), protocol))
}

/// `input` as `BootstrapParams` addressed to this shim, or `None` when it is the legacy form.
///
/// The legacy form's `Any` decodes as `BootstrapParams` too (its type URL and value land in
/// `instance_id` and `namespace`), so the identity decides: params for this shim's `-id` and
/// `-namespace` are the bootstrap form, params that set anything beyond those two fields but
/// name another shim are an error, and the rest is legacy.
fn bootstrap_params(input: &[u8], flags: &Flags) -> Result<Option<BootstrapParams>, String> {
    if input.is_empty() {
        return Ok(None);
    }
    let Ok(params) = BootstrapParams::parse_from_bytes(input) else {
        return Ok(None);
    };
    if params.instance_id == flags.id && params.namespace == flags.namespace {
        return Ok(Some(params));
    }
    let identity_only = BootstrapParams {
        instance_id: params.instance_id.clone(),
        namespace: params.namespace.clone(),
        ..Default::default()
    };
    if params == identity_only {
        return Ok(None);
    }
    Err(format!(
        "start: BootstrapParams are for {}/{}, but -namespace/-id say {}/{}",
        params.namespace, params.instance_id, flags.namespace, flags.id
    ))
}

/// The legacy form as `BootstrapParams`: flags, environment, and the options `Any` from stdin
/// (empty stdin: no options).
fn legacy_params(input: &[u8], flags: &Flags, env: LegacyEnv) -> Result<BootstrapParams, String> {
    let mut params = BootstrapParams {
        instance_id: flags.id.clone(),
        namespace: flags.namespace.clone(),
        containerd_ttrpc_address: env.ttrpc_address,
        containerd_grpc_address: if flags.address.is_empty() {
            env.grpc_address
        } else {
            flags.address.clone()
        },
        containerd_binary: flags.publish_binary.clone(),
        ..Default::default()
    };
    if !input.is_empty() {
        let options = Any::parse_from_bytes(input).map_err(|e| {
            format!("start: stdin holds neither BootstrapParams nor runtime options (a protobuf Any): {e}")
        })?;
        params.extensions.push(Extension {
            value: Some(options).into(),
            ..Default::default()
        });
    }
    Ok(params)
}

/// The reply to `start` for a shim serving at `address`, in the form `protocol` expects (see
/// the module documentation). Pure.
pub fn start_reply(address: &str, protocol: StartProtocol) -> Vec<u8> {
    match protocol {
        StartProtocol::Legacy => address.as_bytes().to_vec(),
        StartProtocol::Bootstrap => BootstrapResult {
            version: ANNOUNCED_TASK_API,
            address: address.to_owned(),
            protocol: PROTOCOL.to_owned(),
            ..Default::default()
        }
        .write_to_bytes()
        .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use containerd_shim::{api::Options, bootstrap::LogLevel};

    use super::*;

    const TTRPC: &str = "/run/containerd/containerd.sock.ttrpc";
    const GRPC: &str = "/run/containerd/containerd.sock";

    fn flags() -> Flags {
        Flags {
            id: "pod".into(),
            namespace: "k8s.io".into(),
            address: GRPC.into(),
            publish_binary: "/usr/bin/containerd".into(),
            action: "start".into(),
            ..Default::default()
        }
    }

    fn env() -> LegacyEnv {
        LegacyEnv {
            ttrpc_address: TTRPC.into(),
            grpc_address: String::new(),
        }
    }

    fn runc_options(shim_cgroup: &str) -> Any {
        let options = Options {
            shim_cgroup: shim_cgroup.into(),
            ..Default::default()
        };
        Any {
            type_url: "containerd.runc.v1.Options".into(),
            value: options.write_to_bytes().unwrap(),
            ..Default::default()
        }
    }

    /// What containerd 2.3 writes on stdin.
    fn bootstrap(id: &str) -> BootstrapParams {
        BootstrapParams {
            instance_id: id.into(),
            namespace: "k8s.io".into(),
            log_level: LogLevel::LOG_LEVEL_INFO.into(),
            containerd_version: "v2.3.0".into(),
            containerd_ttrpc_address: TTRPC.into(),
            containerd_grpc_address: GRPC.into(),
            containerd_binary: "/usr/bin/containerd".into(),
            socket_dir: Some("/run/containerd/s".into()),
            extensions: vec![Extension {
                value: Some(runc_options("/shims")).into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn containerd_1_x_and_2_0_to_2_2_get_the_bare_address() {
        // Empty stdin (no options), as containerd 1.6 sends for a handler without options.
        let (opts, protocol) = start_options(&[], &flags(), env()).unwrap();
        assert_eq!(protocol, StartProtocol::Legacy);
        assert_eq!(
            (opts.id.as_str(), opts.namespace.as_str()),
            ("pod", "k8s.io")
        );
        assert_eq!(opts.ttrpc_address, TTRPC);
        assert_eq!(opts.address, GRPC);
        assert!(opts.extensions.is_empty() && !opts.debug);
        let reply = start_reply("unix:///run/containerd/s/abc", protocol);
        // Not JSON: 1.6 takes the text as the address, 1.7 to 2.2 as a v2 shim's.
        assert_eq!(reply, b"unix:///run/containerd/s/abc");
    }

    #[test]
    fn legacy_options_on_stdin_become_an_extension() {
        let input = runc_options("/shims").write_to_bytes().unwrap();
        let (opts, protocol) = start_options(&input, &flags(), env()).unwrap();
        assert_eq!(protocol, StartProtocol::Legacy);
        assert_eq!(opts.extensions, vec![runc_options("/shims")]);
        // Default options are an `Any` with a type URL only: it decodes as BootstrapParams
        // naming another shim, and must still be read as legacy options.
        let input = runc_options("").write_to_bytes().unwrap();
        let (opts, protocol) = start_options(&input, &flags(), env()).unwrap();
        assert_eq!(protocol, StartProtocol::Legacy);
        assert_eq!(opts.extensions, vec![runc_options("")]);
    }

    #[test]
    fn legacy_start_needs_the_ttrpc_address_and_options_it_can_read() {
        let error = start_options(&[], &flags(), LegacyEnv::default()).unwrap_err();
        assert!(error.contains("TTRPC_ADDRESS"), "{error}");
        let error = start_options(&[0xff, 0xff], &flags(), env()).unwrap_err();
        assert!(error.contains("runtime options"), "{error}");
    }

    #[test]
    fn legacy_start_takes_the_grpc_address_from_the_environment_without_a_flag() {
        let mut flags = flags();
        flags.address = String::new();
        let env = LegacyEnv {
            grpc_address: GRPC.into(),
            ..env()
        };
        let (opts, _) = start_options(&[], &flags, env).unwrap();
        assert_eq!(opts.address, GRPC);
    }

    #[test]
    fn containerd_2_3_gets_a_bootstrap_result_announcing_v2() {
        let input = bootstrap("pod").write_to_bytes().unwrap();
        let (opts, protocol) = start_options(&input, &flags(), LegacyEnv::default()).unwrap();
        assert_eq!(protocol, StartProtocol::Bootstrap);
        assert_eq!(opts.socket_dir.as_deref(), Some("/run/containerd/s"));
        assert_eq!(opts.ttrpc_address, TTRPC);
        assert_eq!(opts.containerd_version, "v2.3.0");
        assert_eq!(opts.extensions, vec![runc_options("/shims")]);
        let reply = start_reply("unix:///run/containerd/s/abc", protocol);
        let result = BootstrapResult::parse_from_bytes(&reply).unwrap();
        assert_eq!(result.version, 2);
        assert_eq!(result.address, "unix:///run/containerd/s/abc");
        assert_eq!(result.protocol, "ttrpc");
    }

    #[test]
    fn bootstrap_params_for_another_shim_or_without_ttrpc_address_fail() {
        let input = bootstrap("other-pod").write_to_bytes().unwrap();
        let error = start_options(&input, &flags(), env()).unwrap_err();
        assert!(error.contains("k8s.io/other-pod"), "{error}");
        let mut params = bootstrap("pod");
        params.containerd_ttrpc_address = String::new();
        let input = params.write_to_bytes().unwrap();
        let error = start_options(&input, &flags(), env()).unwrap_err();
        assert!(error.contains("containerd_ttrpc_address"), "{error}");
    }

    #[test]
    fn the_debug_flag_only_lowers_the_level() {
        let mut flags = flags();
        flags.debug = true;
        let (opts, _) = start_options(&[], &flags, env()).unwrap();
        assert!(opts.debug);
        let mut params = bootstrap("pod");
        params.log_level = LogLevel::LOG_LEVEL_TRACE.into();
        let input = params.write_to_bytes().unwrap();
        let (opts, _) = start_options(&input, &flags, env()).unwrap();
        assert_eq!(opts.log_level, LogLevel::LOG_LEVEL_TRACE);
    }
}
