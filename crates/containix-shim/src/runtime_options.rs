//! The runtime options containerd hands the shim, in either of the two forms it uses.
//!
//! containerd sends a runtime handler's `options` table with Task.Create and, since 1.7, on
//! `shim start`'s stdin. CRI encodes it by runtime type: runc's own `Options` for the runc
//! runtime types, and for every other type (ours, `io.containerd.containix.v1`) the generic
//! `runtimeoptions.v1.Options`, whose `config_body` is the table as TOML. A `containix` handler
//! has such a table when `containix node install` copies the node's runc options into it (so
//! containix pods use the same runc, root and cgroup driver). Decoding that message as runc's
//! would read the TOML text as `ShimCgroup`; [`decode`] reads each form as what it is.

use containerd_shim::{
    api::Options,
    protos::protobuf::{CodedInputStream, Message, well_known_types::any::Any},
};

use crate::error::{Result, ShimError};

/// The type URL of CRI's generic options (`runtimeoptions.v1.Options`).
pub const GENERIC_TYPE_URL: &str = "runtimeoptions.v1.Options";
/// The type URL of runc's options.
const RUNC_TYPE_URL: &str = "containerd.runc.v1.Options";

/// The runc options `any` carries: decoded directly, or read from the TOML of the generic
/// form. An empty value gives the defaults.
pub fn decode(any: &Any) -> Result<Options> {
    if any.value.is_empty() {
        return Ok(Options::default());
    }
    if any
        .type_url
        .trim_start_matches('/')
        .ends_with(GENERIC_TYPE_URL)
    {
        let generic = GenericOptions::parse(&any.value).map_err(|e| {
            ShimError::InvalidArgument(format!(
                "options: expected {GENERIC_TYPE_URL}, got undecodable bytes: {e}"
            ))
        })?;
        return generic.runc_options();
    }
    Options::parse_from_bytes(&any.value).map_err(|e| {
        ShimError::InvalidArgument(format!(
            "options: expected runc options ({RUNC_TYPE_URL}), got undecodable {:?}: {e}",
            any.type_url
        ))
    })
}

/// The runc options among the extensions containerd passed to `shim start` (the `Any` on stdin
/// before containerd 2.3, an extension of its `BootstrapParams` since): the first of runc's or
/// the generic form, decoded as what it is, else the defaults. The containerd-shim crate's
/// `spawn` is given none of them, so it moves the shim into no `ShimCgroup`.
pub fn start_options(extensions: &[Any]) -> Result<Options> {
    let is_options = |any: &&Any| {
        let name = any.type_url.rsplit('/').next().unwrap_or_default();
        name == RUNC_TYPE_URL || name == GENERIC_TYPE_URL
    };
    extensions
        .iter()
        .find(is_options)
        .map_or_else(|| Ok(Options::default()), decode)
}

/// `runtimeoptions.v1.Options`: `type_url = 1`, `config_path = 2`, `config_body = 3`.
#[derive(Debug, Default, PartialEq, Eq)]
struct GenericOptions {
    config_path: String,
    config_body: Vec<u8>,
}

impl GenericOptions {
    fn parse(bytes: &[u8]) -> containerd_shim::protos::protobuf::Result<Self> {
        let mut input = CodedInputStream::from_bytes(bytes);
        let mut options = Self::default();
        while let Some(tag) = input.read_raw_tag_or_eof()? {
            match tag {
                // Field 2 and 3, length-delimited (wire type 2).
                0x12 => options.config_path = input.read_string()?,
                0x1a => options.config_body = input.read_bytes()?,
                other => {
                    containerd_shim::protos::protobuf::rt::skip_field_for_tag(other, &mut input)?
                }
            }
        }
        Ok(options)
    }

    /// The runc options in the TOML (`config_body`, else the file at `config_path`), by the
    /// key names containerd's config uses (`BinaryName`, `Root`, `SystemdCgroup`, ...).
    fn runc_options(&self) -> Result<Options> {
        let text = if self.config_body.is_empty() && !self.config_path.is_empty() {
            std::fs::read_to_string(&self.config_path).map_err(|e| {
                ShimError::InvalidArgument(format!(
                    "options: ConfigPath {:?} cannot be read: {e}",
                    self.config_path
                ))
            })?
        } else {
            String::from_utf8_lossy(&self.config_body).into_owned()
        };
        let table: toml::Table = text.parse().map_err(|e| {
            ShimError::InvalidArgument(format!("options: the handler's options are not TOML: {e}"))
        })?;
        let string = |key: &str| -> Result<String> {
            match table.get(key) {
                None => Ok(String::new()),
                Some(toml::Value::String(value)) => Ok(value.clone()),
                Some(other) => Err(wrong_type(key, "a string", other)),
            }
        };
        let boolean = |key: &str| -> Result<bool> {
            match table.get(key) {
                None => Ok(false),
                Some(toml::Value::Boolean(value)) => Ok(*value),
                Some(other) => Err(wrong_type(key, "true or false", other)),
            }
        };
        let id = |key: &str| -> Result<u32> {
            match table.get(key) {
                None => Ok(0),
                Some(toml::Value::Integer(value)) => u32::try_from(*value)
                    .map_err(|_| wrong_type(key, "a user or group id", &table[key])),
                Some(other) => Err(wrong_type(key, "a user or group id", other)),
            }
        };
        Ok(Options {
            no_pivot_root: boolean("NoPivotRoot")?,
            no_new_keyring: boolean("NoNewKeyring")?,
            shim_cgroup: string("ShimCgroup")?,
            io_uid: id("IoUid")?,
            io_gid: id("IoGid")?,
            binary_name: string("BinaryName")?,
            root: string("Root")?,
            systemd_cgroup: boolean("SystemdCgroup")?,
            criu_image_path: string("CriuImagePath")?,
            criu_work_path: string("CriuWorkPath")?,
            ..Options::default()
        })
    }
}

fn wrong_type(key: &str, expected: &str, found: &toml::Value) -> ShimError {
    let found = match found {
        toml::Value::String(text) => format!("{text:?}"),
        toml::Value::Integer(number) => number.to_string(),
        other => format!("a {}", other.type_str()),
    };
    ShimError::InvalidArgument(format!(
        "options: `{key}` must be {expected}, found {found}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes containerd sends for a generic options table whose TOML is `body`.
    fn generic(body: &str) -> Any {
        let mut value = Vec::new();
        // config_body: field 3, length-delimited.
        value.push(0x1a);
        value.push(u8::try_from(body.len()).expect("short test bodies"));
        value.extend_from_slice(body.as_bytes());
        Any {
            type_url: GENERIC_TYPE_URL.into(),
            value,
            ..Default::default()
        }
    }

    #[test]
    fn the_generic_form_is_read_from_its_toml() {
        // What containerd 2.1 sends for the table `containix node install` writes.
        let body = "BinaryName = ''\nIoGid = 0\nRoot = '/run/containix-runc'\nShimCgroup = ''\n\
                    SystemdCgroup = true\n";
        let options = decode(&generic(body)).unwrap();
        assert_eq!(options.root, "/run/containix-runc");
        assert!(options.systemd_cgroup);
        assert_eq!(options.shim_cgroup, "", "the TOML is not a cgroup path");
        assert_eq!(options.binary_name, "");
    }

    #[test]
    fn runc_options_are_decoded_directly() {
        let runc = Options {
            binary_name: "/usr/sbin/runc".into(),
            systemd_cgroup: true,
            ..Options::default()
        };
        let any = Any {
            type_url: "containerd.runc.v1.Options".into(),
            value: runc.write_to_bytes().unwrap(),
            ..Default::default()
        };
        assert_eq!(decode(&any).unwrap(), runc);
        assert_eq!(decode(&Any::default()).unwrap(), Options::default());
    }

    #[test]
    fn start_takes_the_first_options_extension_and_ignores_other_types() {
        let runc = Options {
            shim_cgroup: "/shims".into(),
            ..Options::default()
        };
        let runc_any = Any {
            type_url: format!("type.googleapis.com/{RUNC_TYPE_URL}"),
            value: runc.write_to_bytes().unwrap(),
            ..Default::default()
        };
        let other = Any {
            type_url: "containerd.cri.v1.Config".into(),
            value: vec![0xff],
            ..Default::default()
        };
        assert_eq!(start_options(&[]).unwrap(), Options::default());
        assert_eq!(
            start_options(std::slice::from_ref(&other)).unwrap(),
            Options::default()
        );
        assert_eq!(start_options(&[other, runc_any]).unwrap(), runc);
        let generic = start_options(&[generic("ShimCgroup = '/x'\n")]).unwrap();
        assert_eq!(generic.shim_cgroup, "/x");
    }

    #[test]
    fn bad_generic_options_name_the_key() {
        let error = decode(&generic("SystemdCgroup = 'yes'\n"))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("`SystemdCgroup` must be true or false"),
            "{error}"
        );
        let error = decode(&generic("IoUid = -1\n")).unwrap_err().to_string();
        assert!(
            error.contains("`IoUid` must be a user or group id"),
            "{error}"
        );
        let error = decode(&generic("Root = \n")).unwrap_err().to_string();
        assert!(error.contains("not TOML"), "{error}");
    }
}
