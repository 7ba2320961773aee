//! `/etc/passwd` and `/etc/group` for a rootfs that has none.
//!
//! A pure Nix rootfs has no `/etc`, yet many programs (and libc's `getpwuid`) expect the running
//! user to have an entry. The files name root, nobody and the container's own uid/gid.

/// uid and gid of `nobody`/`nogroup`.
pub const NOBODY_ID: u32 = 65534;

/// Name given to the container's user and group when they are neither root nor nobody.
pub const CONTAINER_ACCOUNT: &str = "containix";

/// `/etc/passwd` naming root, nobody and `uid` (with primary group `gid`).
pub fn passwd(uid: u32, gid: u32) -> String {
    let mut text = String::from("root:x:0:0:root:/root:/bin/sh\n");
    text.push_str(&format!(
        "nobody:x:{NOBODY_ID}:{NOBODY_ID}:nobody:/nonexistent:/sbin/nologin\n"
    ));
    if uid != 0 && uid != NOBODY_ID {
        text.push_str(&format!(
            "{CONTAINER_ACCOUNT}:x:{uid}:{gid}:{CONTAINER_ACCOUNT}:/:/sbin/nologin\n"
        ));
    }
    text
}

/// `/etc/group` naming root, nogroup and `gid`.
pub fn group(gid: u32) -> String {
    let mut text = String::from("root:x:0:\n");
    text.push_str(&format!("nogroup:x:{NOBODY_ID}:\n"));
    if gid != 0 && gid != NOBODY_ID {
        text.push_str(&format!("{CONTAINER_ACCOUNT}:x:{gid}:\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_only_when_running_as_root() {
        assert_eq!(passwd(0, 0).lines().count(), 2);
        assert_eq!(group(0).lines().count(), 2);
        assert_eq!(passwd(NOBODY_ID, NOBODY_ID).lines().count(), 2);
    }

    #[test]
    fn names_the_container_user() {
        let text = passwd(1000, 2000);
        assert!(text.contains("\ncontainix:x:1000:2000:containix:/:/sbin/nologin\n"));
        assert!(group(2000).ends_with("containix:x:2000:\n"));
        for line in text.lines() {
            assert_eq!(line.split(':').count(), 7, "{line}");
        }
    }
}
