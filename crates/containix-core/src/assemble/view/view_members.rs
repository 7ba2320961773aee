//! A store view's members, read from its directory: the view holds one entry per closure
//! member and nothing else, so a path is a member exactly when the view has its entry. A
//! repeat start plans from this instead of the closure's path infos (`closure.json`, 1.8 MB for
//! 2,500 members): each question costs one `lstat`, whatever the closure's size.

use std::fs;
use std::path::PathBuf;

use crate::store::members::Members;
use crate::store::store_path::{STORE_DIR, StorePath};

/// The members of the store view whose store directory is `store`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewMembers {
    store: PathBuf,
}

impl ViewMembers {
    /// The members shown in `store`, a view's store directory ([`super::record::ViewPaths::store`]).
    pub fn new(store: PathBuf) -> Self {
        Self { store }
    }
}

impl Members for ViewMembers {
    /// Whether the view has an entry named like `path`; the entry itself is not followed.
    fn contains(&self, path: &StorePath) -> bool {
        fs::symlink_metadata(self.store.join(path.base_name())).is_ok()
    }

    fn list(&self) -> std::io::Result<Vec<StorePath>> {
        let mut members = Vec::new();
        for entry in fs::read_dir(&self.store)? {
            let name = entry?.file_name();
            let member = name
                .to_str()
                .and_then(|name| StorePath::parse(&format!("{STORE_DIR}/{name}")).ok());
            match member {
                Some(path) => members.push(path),
                None => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "{}: {name:?} is not a store path name",
                            self.store.display()
                        ),
                    ));
                }
            }
        }
        members.sort();
        Ok(members)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::store::closure::Closure;
    use crate::store::path_info::PathInfo;

    fn path(index: usize) -> StorePath {
        StorePath::parse(&format!("{STORE_DIR}/{index:032}-p{index}")).unwrap()
    }

    /// A view directory showing `shown` (files, directories and a dangling symlink, as a link
    /// farm or bind tree may hold them), and the closure of the same paths.
    fn view_and_closure(shown: &[usize]) -> (tempfile::TempDir, ViewMembers, Closure) {
        let dir = tempfile::tempdir().unwrap();
        let mut infos = Vec::new();
        for (position, &index) in shown.iter().enumerate() {
            let member = path(index);
            let entry = dir.path().join(member.base_name());
            match position % 3 {
                0 => fs::create_dir(&entry).unwrap(),
                1 => fs::write(&entry, b"").unwrap(),
                _ => std::os::unix::fs::symlink("/nowhere", &entry).unwrap(),
            }
            infos.push(PathInfo::new(member, "sha256:0", 1, []));
        }
        let roots = infos.iter().map(|info| info.path.clone()).collect();
        let closure = Closure::new(roots, infos).unwrap();
        let members = ViewMembers::new(dir.path().to_owned());
        (dir, members, closure)
    }

    proptest! {
        /// The view's directory answers every question as the closure it shows would.
        #[test]
        fn a_view_answers_like_its_closure(
            shown in proptest::collection::btree_set(0usize..40, 0..20),
            asked in proptest::collection::vec(0usize..40, 0..20),
        ) {
            let shown: Vec<usize> = shown.into_iter().collect();
            let (_dir, view, closure) = view_and_closure(&shown);
            prop_assert_eq!(view.list().unwrap(), Members::list(&closure).unwrap());
            for index in asked {
                let question = path(index);
                prop_assert_eq!(view.contains(&question), Members::contains(&closure, &question));
            }
        }
    }

    #[test]
    fn a_stranger_in_the_view_is_refused() {
        let (dir, view, _) = view_and_closure(&[1]);
        fs::write(dir.path().join("not-a-store-path"), b"").unwrap();
        let err = view.list().unwrap_err();
        assert!(err.to_string().contains("not a store path name"), "{err}");
    }
}
