//! containerd's config file as containix needs it: the `containix` runtime handler with
//! containix's runtime type and `pod_annotations`.
//!
//! [`check()`] reads a config and names what is missing (for `containix doctor`); [`edit`] adds or
//! removes the handler while keeping every other setting and comment (for `containix node
//! install`). Both are pure: they take and return the file's text. k3s and RKE2 keep the config
//! as a Go template instead ([`template_edit`], through [`go_template`]).

pub mod check;
pub mod edit;
pub mod go_template;
pub mod handler;
pub mod template_edit;

pub use check::{ConfigProblem, ContainerdConfig, check, grpc_address};
pub use edit::{
    CREATED_MARKER, ConfigEdit, EditError, HANDLER_COMMENT, add_handler, remove_handler,
};
pub use go_template::{BASE_TEMPLATE_ACTION, MaskedTemplate, SYSTEMD_CGROUP_ACTION};
pub use handler::{
    DEFAULT_ADDRESS, DEFAULT_CONFIG_PATH, HANDLER, POD_ANNOTATIONS, RUNTIME_TYPE, SHIM_BINARY,
    cri_runtime_plugin, handler_table_name, version_for_containerd_major,
};
pub use template_edit::{TEMPLATE_CREATED_MARKER, add_template_handler, remove_template_handler};
