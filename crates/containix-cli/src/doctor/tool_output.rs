//! Reading what `containerd --version`, `runc --version`, the shim's `-v` and
//! `nix show-config --json` print.

use serde_json::Value;

use super::facts::NixSettings;

/// The version in `containerd --version` output
/// (`containerd github.com/containerd/containerd 1.6.20~ds1 <revision>`): the third word, or
/// the whole first line when it has another shape.
pub fn containerd_version(output: &str) -> String {
    let line = output.lines().next().unwrap_or("").trim();
    line.split_whitespace()
        .nth(2)
        .filter(|_| line.starts_with("containerd "))
        .unwrap_or(line)
        .to_owned()
}

/// The version in `runc --version` output (`runc version 1.1.5+ds1` on the first line).
pub fn runc_version(output: &str) -> String {
    let line = output.lines().next().unwrap_or("").trim();
    line.strip_prefix("runc version ")
        .unwrap_or(line)
        .to_owned()
}

/// The version in the shim's `-v` output (`containerd-shim-containix-v1 0.1.0`): its last word.
pub fn shim_version(output: &str) -> Option<String> {
    output
        .lines()
        .next()?
        .split_whitespace()
        .last()
        .map(str::to_owned)
}

/// The substitution settings in `nix show-config --json` (or `nix config show --json`) output:
/// an object of settings, each `{"value": ...}`. Lists may also come as one space-separated
/// string.
pub fn nix_settings(json: &str) -> Result<NixSettings, String> {
    let root: Value =
        serde_json::from_str(json).map_err(|err| format!("Nix's settings are not JSON: {err}"))?;
    let list = |name: &str| -> Result<Vec<String>, String> {
        match root.get(name).map(|setting| setting.get("value")) {
            None => Err(format!("Nix's settings have no `{name}`")),
            Some(Some(Value::Array(items))) => Ok(items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()),
            Some(Some(Value::String(text))) => {
                Ok(text.split_whitespace().map(str::to_owned).collect())
            }
            Some(_) => Err(format!("Nix's `{name}` setting has no list value")),
        }
    };
    Ok(NixSettings {
        substituters: list("substituters")?,
        trusted_public_keys: list("trusted-public-keys")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_tool_output() {
        assert_eq!(
            containerd_version(
                "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3\n"
            ),
            "1.6.20~ds1"
        );
        assert_eq!(containerd_version("something else\n"), "something else");
        assert_eq!(
            runc_version("runc version 1.1.5+ds1\ncommit: x\nspec: 1.0.2-dev\n"),
            "1.1.5+ds1"
        );
        assert_eq!(
            shim_version("containerd-shim-containix-v1 0.1.0\n").as_deref(),
            Some("0.1.0")
        );
        assert_eq!(shim_version(""), None);
    }

    #[test]
    fn nix_settings_are_read_from_show_config_json() {
        let json = r#"{
            "substituters": {"aliases": [], "value": ["https://cache.nixos.org/", "http://127.0.0.1:8080"]},
            "trusted-public-keys": {"value": ["cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY="]},
            "cores": {"value": 0}
        }"#;
        let settings = nix_settings(json).unwrap();
        assert_eq!(settings.substituters.len(), 2);
        assert_eq!(settings.trusted_public_keys.len(), 1);

        let empty = r#"{"substituters": {"value": []}, "trusted-public-keys": {"value": ""}}"#;
        assert_eq!(nix_settings(empty).unwrap(), NixSettings::default());

        let err = nix_settings(r#"{"cores": {"value": 0}}"#).unwrap_err();
        assert!(err.contains("`substituters`"), "{err}");
        assert!(nix_settings("error: unknown command").is_err());
    }
}
