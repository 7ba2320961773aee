//! A binary cache server whose faults a test switches on and off while a daemon uses it: down
//! (nothing listens), stalled while looking a path up or half-way through a NAR, a NAR with a
//! flipped byte, narinfos without a signature or with a bad one.
//!
//! It serves a [`BinaryCache`](crate::binary_cache::BinaryCache)'s directory on one loopback
//! port for its whole life (a fault that takes it down frees the port, and the cache comes back
//! on the same one), so a daemon whose `nix.conf` names [`FaultyCache::url`] keeps working once
//! the fault is gone. Push NARs uncompressed
//! ([`BinaryCache::push_uncompressed`](crate::binary_cache::BinaryCache::push_uncompressed)) for
//! [`CacheFault::CorruptNar`] to be a content corruption (Nix then reports a hash mismatch), not
//! a broken compressed stream.

use std::fs;
use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::http_server::{Request, content_type, read_request, resolve, respond_empty};

/// What the cache does wrong; switched with [`FaultyCache::set_fault`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheFault {
    /// Serves the cache as it is.
    Healthy,
    /// Nothing listens on the port: connections are refused.
    Down,
    /// Holds every narinfo request (the connection stays open, nothing is sent), so a daemon
    /// looking a path up in the cache waits; the answer goes out when the fault is switched off.
    StallNarinfo,
    /// Sends a NAR's headers and its first half, then nothing (the connection stays open); the
    /// rest goes out when the fault is switched off.
    StallNar,
    /// Serves every NAR with its middle byte flipped.
    CorruptNar,
    /// Serves narinfos without their `Sig:` lines.
    MissingSignature,
    /// Serves narinfos whose signatures do not verify (one character of each changed).
    BadSignature,
}

/// A loopback HTTP server for a binary cache directory, with a switchable [`CacheFault`].
#[derive(Debug)]
pub struct FaultyCache {
    root: PathBuf,
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<Acceptor>,
}

#[derive(Debug)]
struct Shared {
    fault: Mutex<CacheFault>,
    changed: Condvar,
    stopping: AtomicBool,
    /// Responses that stalled so far.
    stalls: AtomicUsize,
}

#[derive(Debug)]
struct Acceptor {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// How long a stalled response waits at most (a hang guard for the test process).
const STALL_LIMIT: Duration = Duration::from_secs(600);

impl FaultyCache {
    /// Serves `root` (a binary cache directory) on a free loopback port, healthy.
    pub fn serve(root: impl Into<PathBuf>) -> Result<FaultyCache> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|err| Error::io("binding a loopback port", err))?;
        let addr = listener
            .local_addr()
            .map_err(|err| Error::io("reading the bound address", err))?;
        let mut cache = FaultyCache {
            root: root.into(),
            addr,
            shared: Arc::new(Shared {
                fault: Mutex::new(CacheFault::Healthy),
                changed: Condvar::new(),
                stopping: AtomicBool::new(false),
                stalls: AtomicUsize::new(0),
            }),
            acceptor: None,
        };
        cache.acceptor = Some(cache.accept_on(listener)?);
        Ok(cache)
    }

    /// The base URL, without a trailing slash, for `substituters`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The fault in effect.
    pub fn fault(&self) -> CacheFault {
        *self.shared.fault.lock().expect("fault lock")
    }

    /// Switches to `fault`. Stalled responses go on when the stall they are in is switched off;
    /// [`CacheFault::Down`] closes the port and any other fault opens it again.
    pub fn set_fault(&mut self, fault: CacheFault) -> Result<()> {
        *self.shared.fault.lock().expect("fault lock") = fault;
        self.shared.changed.notify_all();
        match (fault, self.acceptor.is_some()) {
            (CacheFault::Down, true) => self.stop_accepting(),
            (CacheFault::Down, false) | (_, true) => {}
            (_, false) => {
                let listener = TcpListener::bind(self.addr)
                    .map_err(|err| Error::io(format!("binding {} again", self.addr), err))?;
                self.acceptor = Some(self.accept_on(listener)?);
            }
        }
        Ok(())
    }

    /// How many responses stalled so far.
    pub fn stalls(&self) -> usize {
        self.shared.stalls.load(Ordering::SeqCst)
    }

    /// Waits until at least `count` responses stalled, for at most `limit`.
    pub fn wait_for_stalls(&self, count: usize, limit: Duration) -> Result<()> {
        let started = Instant::now();
        while self.stalls() < count {
            if started.elapsed() > limit {
                return Err(Error::Timeout {
                    what: format!("{count} stalled responses from the cache at {}", self.url()),
                    waited: started.elapsed(),
                    detail: format!("{} stalled", self.stalls()),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn accept_on(&self, listener: TcpListener) -> Result<Acceptor> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (stop, shared, root) = (
                Arc::clone(&stop),
                Arc::clone(&self.shared),
                self.root.clone(),
            );
            std::thread::Builder::new()
                .name(format!("faulty-cache-{}", self.addr.port()))
                .spawn(move || {
                    for stream in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(stream) = stream else { continue };
                        let (shared, root) = (Arc::clone(&shared), root.clone());
                        let _ = std::thread::Builder::new().spawn(move || {
                            let _ = answer(stream, &root, &shared);
                        });
                    }
                })
                .map_err(|err| Error::io("starting the cache server thread", err))?
        };
        Ok(Acceptor { stop, thread })
    }

    fn stop_accepting(&mut self) {
        if let Some(acceptor) = self.acceptor.take() {
            acceptor.stop.store(true, Ordering::SeqCst);
            // Wake the blocking accept so the loop sees the flag and drops the listener.
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
            let _ = acceptor.thread.join();
        }
    }
}

impl Drop for FaultyCache {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.changed.notify_all();
        self.stop_accepting();
    }
}

fn answer(mut stream: TcpStream, root: &Path, shared: &Shared) -> io::Result<()> {
    let request: Request = match read_request(&stream)? {
        Ok(request) => request,
        Err(status) => return respond_empty(&mut stream, status, false),
    };
    let fault = *shared.fault.lock().expect("fault lock");
    let is_narinfo = request.path.ends_with(".narinfo");
    let is_nar = request.path.starts_with("/nar/");
    if fault == CacheFault::StallNarinfo && is_narinfo && !stall(shared, fault) {
        return Ok(());
    }
    let Some(mut body) = resolve(root, &request.path).and_then(|path| fs::read(path).ok()) else {
        return respond_empty(&mut stream, "404 Not Found", request.head_only);
    };
    match fault {
        CacheFault::CorruptNar if is_nar && !body.is_empty() => {
            let middle = body.len() / 2;
            body[middle] ^= 0xff;
        }
        CacheFault::MissingSignature if is_narinfo => {
            body = rewrite_lines(&body, |line| {
                (!line.starts_with("Sig: ")).then(|| line.into())
            });
        }
        CacheFault::BadSignature if is_narinfo => {
            body = rewrite_lines(&body, |line| Some(spoil_signature(line)));
        }
        _ => {}
    }
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: {}\r\nConnection: close\r\n\r\n",
        body.len(),
        content_type(&request.path)
    )?;
    if request.head_only {
        return stream.flush();
    }
    if fault == CacheFault::StallNar && is_nar {
        let half = body.len() / 2;
        stream.write_all(&body[..half])?;
        stream.flush()?;
        if !stall(shared, fault) {
            return Ok(());
        }
        body.drain(..half);
    }
    stream.write_all(&body)?;
    stream.flush()
}

/// Holds the connection (sending nothing) until `fault` is switched off (`true`: the response
/// goes on) or the server stops (`false`).
fn stall(shared: &Shared, fault: CacheFault) -> bool {
    shared.stalls.fetch_add(1, Ordering::SeqCst);
    let started = Instant::now();
    let mut current = shared.fault.lock().expect("fault lock");
    while *current == fault
        && !shared.stopping.load(Ordering::SeqCst)
        && started.elapsed() < STALL_LIMIT
    {
        current = shared
            .changed
            .wait_timeout(current, Duration::from_millis(100))
            .expect("fault lock")
            .0;
    }
    *current != fault
}

/// The text `body` with each line replaced by what `edit` makes of it (`None` drops it).
fn rewrite_lines(body: &[u8], edit: impl Fn(&str) -> Option<String>) -> Vec<u8> {
    let text = String::from_utf8_lossy(body);
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if let Some(line) = edit(line) {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out.into_bytes()
}

/// A `Sig: <key>:<base64>` line with the first character of its signature changed.
fn spoil_signature(line: &str) -> String {
    let Some((head, signature)) = line
        .strip_prefix("Sig: ")
        .and_then(|sig| sig.split_once(':'))
    else {
        return line.to_owned();
    };
    let mut chars: Vec<char> = signature.chars().collect();
    if let Some(first) = chars.first_mut() {
        *first = if *first == 'A' { 'B' } else { 'A' };
    }
    format!("Sig: {head}:{}", chars.into_iter().collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn get(cache: &FaultyCache, path: &str) -> io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect(cache.addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(stream, "GET {path} HTTP/1.1\r\n\r\n")?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        Ok(response)
    }

    fn body(response: &[u8]) -> &[u8] {
        let end = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        &response[end + 4..]
    }

    #[test]
    fn each_fault_changes_what_is_served_and_healthy_restores_it() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("nar")).unwrap();
        fs::write(dir.path().join("nar/a.nar"), b"0123456789").unwrap();
        fs::write(
            dir.path().join("a.narinfo"),
            "StorePath: /nix/store/a\nSig: key-1:QUJD\n",
        )
        .unwrap();
        let mut cache = FaultyCache::serve(dir.path()).unwrap();
        assert_eq!(body(&get(&cache, "/nar/a.nar").unwrap()), b"0123456789");

        cache.set_fault(CacheFault::CorruptNar).unwrap();
        assert_eq!(body(&get(&cache, "/nar/a.nar").unwrap()), b"01234\xca6789");
        cache.set_fault(CacheFault::MissingSignature).unwrap();
        assert_eq!(
            body(&get(&cache, "/a.narinfo").unwrap()),
            b"StorePath: /nix/store/a\n"
        );
        cache.set_fault(CacheFault::BadSignature).unwrap();
        assert_eq!(
            body(&get(&cache, "/a.narinfo").unwrap()),
            b"StorePath: /nix/store/a\nSig: key-1:AUJD\n"
        );

        cache.set_fault(CacheFault::Down).unwrap();
        assert!(TcpStream::connect(cache.addr).is_err());
        cache.set_fault(CacheFault::Healthy).unwrap();
        assert_eq!(body(&get(&cache, "/nar/a.nar").unwrap()), b"0123456789");
    }

    #[test]
    fn a_stalled_nar_sends_half_and_the_rest_when_the_stall_is_switched_off() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("nar")).unwrap();
        fs::write(dir.path().join("nar/a.nar"), b"0123456789").unwrap();
        let mut cache = FaultyCache::serve(dir.path()).unwrap();
        cache.set_fault(CacheFault::StallNar).unwrap();
        let addr = cache.addr;
        let reader = std::thread::spawn(move || {
            let mut stream = TcpStream::connect(addr).unwrap();
            write!(stream, "GET /nar/a.nar HTTP/1.1\r\n\r\n").unwrap();
            let mut response = Vec::new();
            stream.read_to_end(&mut response).unwrap();
            response
        });
        cache.wait_for_stalls(1, Duration::from_secs(5)).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert!(!reader.is_finished(), "the response went on while stalled");
        cache.set_fault(CacheFault::Healthy).unwrap();
        let response = reader.join().unwrap();
        assert!(String::from_utf8_lossy(&response).contains("Content-Length: 10\r\n"));
        assert_eq!(body(&response), b"0123456789");
    }
}
