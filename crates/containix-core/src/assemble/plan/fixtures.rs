//! Hand-made closures, stores and base specs for the planner's tests.

use oci_spec::runtime::{Mount, MountBuilder, ProcessBuilder, RootBuilder, Spec, UserBuilder};

use crate::assemble::store_facts::MemoryStore;
use crate::resolve::resolved::Resolved;
use crate::store::closure::Closure;
use crate::store::nix32;
use crate::store::path_info::PathInfo;
use crate::store::store_path::StorePath;

/// A valid store path whose hash part is derived from `name`.
pub fn store_path(name: &str) -> StorePath {
    let mut digest = [0u8; 20];
    for (i, byte) in name.bytes().enumerate() {
        digest[i % 20] = digest[i % 20].wrapping_mul(31).wrapping_add(byte);
    }
    StorePath::parse(&format!("/nix/store/{}-{name}", nix32::encode(&digest))).unwrap()
}

/// Path info of `path` referring to `references`.
pub fn info(path: &StorePath, references: &[&StorePath]) -> PathInfo {
    PathInfo::new(
        path.clone(),
        "0".repeat(64),
        1,
        references.iter().map(|r| (*r).clone()),
    )
}

/// The example closure: `app` (with `bin/app`, `bin/helper` -> lib's tool) referring to `lib`,
/// which refers to `cacert` (holding a CA bundle) and `data` (a regular-file member).
pub struct Example {
    /// The root.
    pub app: StorePath,
    /// A library with an executable.
    pub lib: StorePath,
    /// A CA bundle package.
    pub cacert: StorePath,
    /// A member that is a regular file.
    pub data: StorePath,
    /// The resolved request.
    pub resolved: Resolved,
    /// The store holding all of it.
    pub store: MemoryStore,
}

/// Builds [`Example`].
pub fn example() -> Example {
    let app = store_path("app-1.0");
    let lib = store_path("lib-2.0");
    let cacert = store_path("nss-cacert-3.98");
    let data = store_path("config.json");
    let closure = Closure::new(
        vec![app.clone()],
        [
            info(&app, &[&app, &lib]),
            info(&lib, &[&cacert, &data]),
            info(&cacert, &[]),
            info(&data, &[]),
        ],
    )
    .unwrap();
    let store = MemoryStore::new()
        .file(format!("{app}/bin/app"), true)
        .symlink(format!("{app}/bin/helper"), format!("{lib}/bin/tool"))
        .file(format!("{app}/share/doc"), false)
        .file(format!("{lib}/bin/tool"), true)
        .file(format!("{cacert}/etc/ssl/certs/ca-bundle.crt"), false)
        .file(data.as_str(), false);
    let resolved = Resolved {
        roots: vec![app.clone()],
        closure,
        main_program: Some("app".into()),
        package_name: Some("app".into()),
        package_version: Some("1.0".into()),
    };
    Example {
        app,
        lib,
        cacert,
        data,
        resolved,
        store,
    }
}

/// A mount like the ones containerd places.
pub fn base_mount(destination: &str, typ: &str, source: &str) -> Mount {
    MountBuilder::default()
        .destination(destination)
        .typ(typ)
        .source(source)
        .options(vec!["rbind".to_string(), "rprivate".to_string()])
        .build()
        .unwrap()
}

/// A spec like the one containerd hands the runtime for a pod container.
pub fn containerd_spec(args: &[&str], env: &[&str], uid: u32, readonly: bool) -> Spec {
    let mut spec = Spec::default();
    spec.set_root(Some(
        RootBuilder::default()
            .path("rootfs")
            .readonly(readonly)
            .build()
            .unwrap(),
    ));
    let process = ProcessBuilder::default()
        .user(UserBuilder::default().uid(uid).gid(uid).build().unwrap())
        .args(args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
        .env(env.iter().map(|e| e.to_string()).collect::<Vec<_>>())
        .cwd("/")
        .build()
        .unwrap();
    spec.set_process(Some(process));
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    mounts.extend([
        base_mount("/etc/hosts", "bind", "/var/lib/containerd/pod/hosts"),
        base_mount(
            "/etc/resolv.conf",
            "bind",
            "/var/lib/containerd/pod/resolv.conf",
        ),
        base_mount("/etc/hostname", "bind", "/var/lib/containerd/pod/hostname"),
        base_mount(
            "/var/run/secrets/kubernetes.io/serviceaccount",
            "bind",
            "/var/lib/kubelet/pods/x/volumes/token",
        ),
    ]);
    spec.set_mounts(Some(mounts));
    spec
}
