//! Package names and versions from store path and derivation names, the way Nix splits them.

/// Splits a store path name into package name and version as `builtins.parseDrvName` does: the
/// version starts after the first `-` that is followed by a character other than a letter.
pub fn parse_drv_name(name: &str) -> (&str, Option<&str>) {
    let bytes = name.as_bytes();
    for i in 0..bytes.len() {
        if bytes[i] == b'-' && bytes.get(i + 1).is_some_and(|c| !c.is_ascii_alphabetic()) {
            return (&name[..i], Some(&name[i + 1..]));
        }
    }
    (name, None)
}

#[cfg(test)]
mod tests {
    use super::parse_drv_name;

    #[test]
    fn splits_names_like_parse_drv_name() {
        for (name, expected) in [
            ("hello-2.12.1", ("hello", Some("2.12.1"))),
            ("glibc-2.39-52", ("glibc", Some("2.39-52"))),
            (
                "python3.12-requests-2.31.0",
                ("python3.12-requests", Some("2.31.0")),
            ),
            ("source", ("source", None)),
            (
                "bash-interactive-5.2p26",
                ("bash-interactive", Some("5.2p26")),
            ),
            ("hello-2.12.1.drv", ("hello", Some("2.12.1.drv"))),
            ("ca-certificates", ("ca-certificates", None)),
            ("x-", ("x-", None)),
        ] {
            assert_eq!(parse_drv_name(name), expected, "{name}");
        }
    }
}
