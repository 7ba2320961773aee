//! A tiny loopback HTTP server for static files (GET and HEAD), enough to serve a Nix binary cache.
//!
//! One thread accepts connections and one short-lived thread answers each; every response closes
//! its connection. Dropping the server stops it and frees the port.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{Error, Result};

/// The longest request head the server reads.
const MAX_HEAD_BYTES: usize = 16 * 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves the files under a directory at `http://127.0.0.1:<port>/`.
#[derive(Debug)]
pub struct StaticFileServer {
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl StaticFileServer {
    /// Starts serving `root` on a free loopback port.
    pub fn serve(root: impl Into<PathBuf>) -> Result<StaticFileServer> {
        let root = root.into();
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|err| Error::io("binding a loopback port", err))?;
        let addr = listener
            .local_addr()
            .map_err(|err| Error::io("reading the bound address", err))?;
        let stopping = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let stopping = Arc::clone(&stopping);
            std::thread::Builder::new()
                .name(format!("http-{}", addr.port()))
                .spawn(move || accept_loop(&listener, &root, &stopping))
                .map_err(|err| Error::io("starting the HTTP server thread", err))?
        };
        Ok(StaticFileServer {
            addr,
            stopping,
            acceptor: Some(acceptor),
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL, without a trailing slash: `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for StaticFileServer {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the loop sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, root: &Path, stopping: &AtomicBool) {
    for stream in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let root = root.to_path_buf();
        // A client that hangs up mid-response is not the server's problem.
        let _ = std::thread::Builder::new().spawn(move || {
            let _ = answer(stream, &root);
        });
    }
}

/// A parsed request line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Request {
    /// `HEAD` rather than `GET`.
    pub(crate) head_only: bool,
    /// The URL path, without query or fragment.
    pub(crate) path: String,
}

/// Parses `METHOD /path HTTP/1.x`; `Err` carries the status line to answer with.
pub(crate) fn parse_request_line(line: &str) -> Result<Request, &'static str> {
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err("400 Bad Request");
    };
    if !version.starts_with("HTTP/1.") {
        return Err("400 Bad Request");
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Err("405 Method Not Allowed"),
    };
    let path = target.split(['?', '#']).next().unwrap_or_default();
    Ok(Request {
        head_only,
        path: path.to_string(),
    })
}

/// The file under `root` a URL path names, or `None` if it tries to leave `root`.
pub(crate) fn resolve(root: &Path, url_path: &str) -> Option<PathBuf> {
    let relative = Path::new(url_path.strip_prefix('/')?);
    relative
        .components()
        .all(|component| matches!(component, Component::Normal(_)))
        .then(|| root.join(relative))
}

/// Reads a request's head from `stream` (with timeouts set): the parsed request line, or the
/// status to answer with.
pub(crate) fn read_request(stream: &TcpStream) -> io::Result<Result<Request, &'static str>> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Skip the headers: nothing in them changes the answer.
    let mut head_bytes = request_line.len();
    loop {
        let mut header = String::new();
        let read = reader.read_line(&mut header)?;
        head_bytes += read;
        if read == 0 || header == "\r\n" || header == "\n" || head_bytes > MAX_HEAD_BYTES {
            break;
        }
    }
    Ok(parse_request_line(&request_line))
}

fn answer(mut stream: TcpStream, root: &Path) -> io::Result<()> {
    let request = match read_request(&stream)? {
        Ok(request) => request,
        Err(status) => return respond_empty(&mut stream, status, false),
    };
    let file = resolve(root, &request.path).and_then(|path| {
        File::open(path)
            .ok()
            .filter(|file| file.metadata().is_ok_and(|meta| meta.is_file()))
    });
    let Some(mut file) = file else {
        return respond_empty(&mut stream, "404 Not Found", request.head_only);
    };
    let length = file.metadata()?.len();
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Length: {length}\r\nContent-Type: {}\r\n\
         Connection: close\r\n\r\n",
        content_type(&request.path)
    )?;
    if !request.head_only {
        io::copy(&mut file, &mut stream)?;
    }
    stream.flush()
}

pub(crate) fn respond_empty(
    stream: &mut TcpStream,
    status: &str,
    head_only: bool,
) -> io::Result<()> {
    let body = if head_only { "" } else { status };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\
         Connection: close\r\n\r\n{body}",
        status.len()
    )?;
    stream.flush()
}

pub(crate) fn content_type(path: &str) -> &'static str {
    if path.ends_with(".narinfo") {
        "text/x-nix-narinfo"
    } else if path.ends_with("nix-cache-info") {
        "text/x-nix-cache-info"
    } else {
        "application/octet-stream"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn request(server: &StaticFileServer, raw: &str) -> String {
        let mut stream = TcpStream::connect(server.addr()).unwrap();
        stream.write_all(raw.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    }

    #[test]
    fn serves_get_and_head_and_answers_404_for_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("nar")).unwrap();
        std::fs::write(dir.path().join("nar/a.nar"), b"hello").unwrap();
        let server = StaticFileServer::serve(dir.path()).unwrap();

        let get = request(&server, "GET /nar/a.nar HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(get.starts_with("HTTP/1.1 200 OK\r\n"), "{get}");
        assert!(get.contains("Content-Length: 5\r\n"), "{get}");
        assert!(get.ends_with("\r\n\r\nhello"), "{get}");

        let head = request(&server, "HEAD /nar/a.nar HTTP/1.1\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.ends_with("\r\n\r\n"), "{head}");

        let missing = request(&server, "GET /nar/b.nar HTTP/1.1\r\n\r\n");
        assert!(
            missing.starts_with("HTTP/1.1 404 Not Found\r\n"),
            "{missing}"
        );
        let directory = request(&server, "GET /nar HTTP/1.1\r\n\r\n");
        assert!(directory.starts_with("HTTP/1.1 404"), "{directory}");
        let post = request(&server, "POST /nar/a.nar HTTP/1.1\r\n\r\n");
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    }

    #[test]
    fn refuses_paths_that_leave_the_root() {
        let root = Path::new("/srv/cache");
        assert_eq!(
            resolve(root, "/a/b.narinfo"),
            Some(root.join("a/b.narinfo"))
        );
        assert_eq!(resolve(root, "/../etc/passwd"), None);
        assert_eq!(resolve(root, "/a/../../etc"), None);
        assert_eq!(resolve(root, "relative"), None);
    }

    #[test]
    fn stops_listening_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let server = StaticFileServer::serve(dir.path()).unwrap();
        let addr = server.addr();
        drop(server);
        assert!(TcpStream::connect(addr).is_err());
    }
}
