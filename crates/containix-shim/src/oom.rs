//! Live OOM events: a watcher on a container's memory cgroup that publishes `TaskOOM` each
//! time the kernel's OOM killer kills one of the container's processes, as containerd's runc
//! shim does; containerd's CRI then reports the container's reason as `OOMKilled`.
//!
//! What wakes the watcher depends on the hierarchy: on cgroup v2, inotify on `memory.events`
//! (the kernel signals a modification whenever one of its counters moves); on cgroup v1, an
//! eventfd registered for `memory.oom_control` through `cgroup.event_control`. Either way the
//! `oom_kill` counter of that file decides whether a kill happened, so a wake-up for any other
//! reason publishes nothing.

use std::{
    fs::File,
    io::ErrorKind,
    os::fd::{AsRawFd, OwnedFd},
    path::{Path, PathBuf},
    sync::Arc,
};

use containerd_shim::protos::events::task::TaskOOM;
use nix::sys::{
    eventfd::{EfdFlags, EventFd},
    inotify::{AddWatchFlags, InitFlags, Inotify},
};
use tokio::{io::unix::AsyncFd, sync::Mutex, task::JoinHandle};
use tracing::{debug, info};

use crate::{
    error::{Result, ShimError},
    events::{EventSink, emit},
    stats::{Cgroup, parse_keyed},
};

/// Watches one container's memory cgroup until stopped or dropped. Dropping it ends the
/// watching task and closes its file descriptors.
pub struct OomWatcher {
    counter: Arc<OomCounter>,
    task: JoinHandle<()>,
}

/// The `oom_kill` count of one cgroup and how much of it has been published.
struct OomCounter {
    container_id: String,
    file: PathBuf,
    /// Held across reading and publishing, so two checks never publish one kill twice and
    /// a check that publishes finishes before a later one starts.
    published: Mutex<u64>,
    events: Arc<dyn EventSink>,
}

impl OomWatcher {
    /// Starts watching `cgroup` (the container's, found from its init pid as containerd's
    /// runc shim finds it) and publishing `TaskOOM` for `container_id` to `events`. Kills
    /// that happened before the call are not reported.
    pub fn start(
        container_id: &str,
        cgroup: &Cgroup,
        events: Arc<dyn EventSink>,
    ) -> Result<OomWatcher> {
        let (file, notifier) = match cgroup {
            Cgroup::V2(dir) => {
                let file = dir.join("memory.events");
                let notifier = inotify_on(&file)?;
                (file, notifier)
            }
            Cgroup::V1(dirs) => {
                let dir = dirs.get("memory").ok_or_else(|| {
                    ShimError::Other("the cgroup has no v1 memory controller".into())
                })?;
                let file = dir.join("memory.oom_control");
                let notifier = eventfd_on(dir, &file)?;
                (file, notifier)
            }
        };
        // Read after the notifier exists: a kill in between wakes the watcher.
        let initial = read_oom_kills(&file).map_err(ShimError::io(format!(
            "read the oom_kill count in {}",
            file.display()
        )))?;
        // SAFETY: the AsyncFd owns the OwnedFd and neither closes nor replaces it while
        // registered; it is closed when the AsyncFd drops, after deregistering.
        let notifier = unsafe { AsyncFd::register(notifier) }
            .map_err(|e| ShimError::io("poll the OOM notifier")(e.into()))?;
        let counter = Arc::new(OomCounter {
            container_id: container_id.to_owned(),
            file,
            published: Mutex::new(initial),
            events,
        });
        let task = tokio::spawn(watch(notifier, counter.clone()));
        Ok(OomWatcher { counter, task })
    }

    /// Stops watching, then publishes a kill the watcher has not reported yet (one the
    /// kernel counted just before the container's last process died), so that `TaskOOM`
    /// goes out before the caller publishes the exit.
    pub async fn stop(self) {
        self.task.abort();
        self.counter.check().await;
    }
}

impl Drop for OomWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl OomCounter {
    /// Publishes `TaskOOM` if the count rose since the last check. False once the count
    /// cannot be read any more (the cgroup is gone).
    async fn check(&self) -> bool {
        let mut published = self.published.lock().await;
        let count = match read_oom_kills(&self.file) {
            Ok(count) => count,
            Err(e) => {
                debug!("{}: stop watching for OOM: {e}", self.file.display());
                return false;
            }
        };
        if count > *published {
            info!(
                "container {} had {} process(es) killed by the OOM killer",
                self.container_id,
                count - *published
            );
            *published = count;
            emit(
                &*self.events,
                TaskOOM {
                    container_id: self.container_id.clone(),
                    ..Default::default()
                },
            )
            .await;
        }
        true
    }
}

/// Waits for notifications and checks the count after each, until the cgroup is gone.
async fn watch(notifier: AsyncFd<OwnedFd>, counter: Arc<OomCounter>) {
    let mut buffer = [0u8; 4096];
    loop {
        let Ok(mut ready) = notifier.readable().await else {
            return;
        };
        // Drain what is pending (inotify events, or the eventfd's count); a notification
        // that lands after this wakes the loop again.
        loop {
            match ready.try_io(|fd| {
                nix::unistd::read(fd.get_ref(), &mut buffer).map_err(std::io::Error::from)
            }) {
                Ok(Ok(n)) if n > 0 => continue,
                Ok(Ok(_)) => break,
                Ok(Err(e)) => {
                    debug!("OOM notifier of {}: {e}", counter.container_id);
                    return;
                }
                Err(_would_block) => break,
            }
        }
        if !counter.check().await {
            return;
        }
    }
}

/// The `oom_kill` count in `memory.events` (v2) or `memory.oom_control` (v1); a file that
/// has no such line (v1 before Linux 4.13) counts no kills.
pub fn read_oom_kills(file: &Path) -> std::io::Result<u64> {
    let text = std::fs::read_to_string(file)?;
    Ok(parse_keyed(&text).get("oom_kill").copied().unwrap_or(0))
}

/// An inotify instance watching `file` for modification (and its removal).
fn inotify_on(file: &Path) -> Result<OwnedFd> {
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
        .map_err(|e| ShimError::Other(format!("inotify_init1: {e}")))?;
    inotify
        .add_watch(
            file,
            AddWatchFlags::IN_MODIFY | AddWatchFlags::IN_DELETE_SELF,
        )
        .map_err(|e| ShimError::Other(format!("inotify on {}: {e}", file.display())))?;
    Ok(OwnedFd::from(inotify))
}

/// An eventfd the kernel signals on each OOM of the v1 memory cgroup `dir` (and when the
/// cgroup is removed), registered through `dir/cgroup.event_control`.
fn eventfd_on(dir: &Path, oom_control: &Path) -> Result<OwnedFd> {
    let eventfd = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
        .map_err(|e| ShimError::Other(format!("eventfd: {e}")))?;
    let target = File::open(oom_control).map_err(ShimError::io(format!(
        "open {} to watch for OOM",
        oom_control.display()
    )))?;
    let control = dir.join("cgroup.event_control");
    std::fs::write(
        &control,
        format!("{} {}", eventfd.as_raw_fd(), target.as_raw_fd()),
    )
    .map_err(|e| match e.kind() {
        ErrorKind::NotFound => ShimError::Other(format!(
            "{} does not exist: no OOM notification on this kernel",
            control.display()
        )),
        _ => ShimError::io(format!("register for OOM events in {}", control.display()))(e),
    })?;
    Ok(OwnedFd::from(eventfd))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use containerd_shim::protos::protobuf::MessageDyn;

    use super::*;

    #[derive(Default)]
    struct Topics(std::sync::Mutex<Vec<String>>);

    #[async_trait::async_trait]
    impl EventSink for Topics {
        async fn publish(&self, topic: String, event: Box<dyn MessageDyn>) {
            let text = containerd_shim::protos::protobuf::text_format::print_to_string(&*event);
            self.0.lock().unwrap().push(format!("{topic} {text}"));
        }
    }

    impl Topics {
        fn count(&self) -> usize {
            self.0.lock().unwrap().len()
        }
    }

    fn write_events(dir: &Path, oom_kill: u64) {
        std::fs::write(
            dir.join("memory.events"),
            format!("low 0\nhigh 0\nmax 3\noom {oom_kill}\noom_kill {oom_kill}\n"),
        )
        .unwrap();
    }

    async fn until(what: &str, check: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !check() {
            assert!(tokio::time::Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[test]
    fn counts_come_from_the_oom_kill_line() {
        let dir = tempfile::tempdir().unwrap();
        write_events(dir.path(), 2);
        assert_eq!(
            read_oom_kills(&dir.path().join("memory.events")).unwrap(),
            2
        );
        let v1 = dir.path().join("memory.oom_control");
        std::fs::write(&v1, "oom_kill_disable 0\nunder_oom 0\noom_kill 5\n").unwrap();
        assert_eq!(read_oom_kills(&v1).unwrap(), 5);
        std::fs::write(&v1, "oom_kill_disable 0\nunder_oom 0\n").unwrap();
        assert_eq!(read_oom_kills(&v1).unwrap(), 0);
        assert!(read_oom_kills(&dir.path().join("absent")).is_err());
    }

    #[tokio::test]
    async fn a_rising_count_publishes_one_event_per_change() {
        let dir = tempfile::tempdir().unwrap();
        // Kills before the watcher started are not news.
        write_events(dir.path(), 1);
        let events = Arc::new(Topics::default());
        let watcher =
            OomWatcher::start("c1", &Cgroup::V2(dir.path().to_owned()), events.clone()).unwrap();
        write_events(dir.path(), 1);
        write_events(dir.path(), 2);
        until("an OOM event", || events.count() == 1).await;
        assert_eq!(
            events.0.lock().unwrap()[0],
            "/tasks/oom container_id: \"c1\""
        );
        write_events(dir.path(), 4);
        until("a second OOM event", || events.count() == 2).await;
        // Nothing new: stopping publishes nothing.
        watcher.stop().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(events.count(), 2);
    }

    #[tokio::test]
    async fn stop_publishes_a_kill_the_watcher_has_not_seen() {
        let dir = tempfile::tempdir().unwrap();
        write_events(dir.path(), 0);
        let events = Arc::new(Topics::default());
        let watcher =
            OomWatcher::start("c1", &Cgroup::V2(dir.path().to_owned()), events.clone()).unwrap();
        write_events(dir.path(), 1);
        // Whichever of the watcher and the final check sees the kill first publishes it.
        watcher.stop().await;
        assert_eq!(events.count(), 1);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(events.count(), 1);
    }

    #[tokio::test]
    async fn the_watching_task_ends_when_the_cgroup_goes_or_the_watcher_drops() {
        let dir = tempfile::tempdir().unwrap();
        write_events(dir.path(), 0);
        let events = Arc::new(Topics::default());
        let watcher =
            OomWatcher::start("c1", &Cgroup::V2(dir.path().to_owned()), events.clone()).unwrap();
        std::fs::remove_file(dir.path().join("memory.events")).unwrap();
        until("the watching task to end", || watcher.task.is_finished()).await;

        write_events(dir.path(), 0);
        let watcher =
            OomWatcher::start("c2", &Cgroup::V2(dir.path().to_owned()), events.clone()).unwrap();
        let counter = Arc::downgrade(&watcher.counter);
        drop(watcher);
        // The aborted task let go of its counter, and with it of its inotify fd.
        until("the aborted task to drop its state", || {
            counter.upgrade().is_none()
        })
        .await;
        assert_eq!(events.count(), 0);
    }

    #[test]
    fn a_cgroup_without_memory_accounting_cannot_be_watched() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let events: Arc<dyn EventSink> = Arc::new(Topics::default());
        runtime.block_on(async {
            assert!(
                OomWatcher::start("c1", &Cgroup::V2(dir.path().to_owned()), events.clone())
                    .is_err()
            );
            assert!(OomWatcher::start("c1", &Cgroup::V1(Default::default()), events).is_err());
        });
    }
}
