//! Stage 1, **request**: what a pod, a CSI volume or a CLI invocation asks for, read into a
//! typed [`Request`], and the node policy that says what may be asked.
//!
//! Pod annotations ([`annotations`]) and CSI volume attributes ([`volume_attributes`]) parse
//! their values with the same rules: flake references ([`flake_ref`]), durations
//! ([`duration`]), store paths and package names. Nothing here touches the store or the
//! network; every error names the field it came from and what was expected.

pub mod annotations;
pub mod clipped;
pub mod container_request;
pub mod duration;
pub mod flake_ref;
pub mod policy;
pub mod view_setting;
pub mod volume_attributes;

pub use annotations::{AnnotationError, PodAnnotations};
pub use container_request::{Entrypoint, PackageName, Request, Source};
pub use flake_ref::{FlakeInstallable, FlakeRef};
pub use policy::node_policy::{NodePolicy, Realise};
pub use volume_attributes::VolumeAttributes;
