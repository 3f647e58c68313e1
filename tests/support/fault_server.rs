#![allow(dead_code)] // shared by several test binaries, each using part of it
//! Test support: a tiny HTTP/1.1 file server on 127.0.0.1 (std `TcpListener`, one thread per
//! connection, never the internet) that serves files from memory with Range support and injects
//! scripted faults, one per request, so the real download path can be tested offline (DESIGN.md
//! "Tests": download faults against a local HTTP server). Compiled for tests and with the
//! `test-support` feature only.
use std::collections::{HashMap, VecDeque};
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// One scripted misbehaviour, applied to the next request for a path.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Send the headers and this many body bytes, then close the connection.
    DropAfter(usize),
    /// Answer with this status and a short text body (e.g. 503, 404, 500).
    Status(u16),
    /// Send the right length but with some bytes flipped.
    CorruptBytes,
    /// Announce a Content-Length that differs from what is sent by this many bytes, then close.
    LyingContentLength(i64),
    /// Send the body in `chunk`-byte pieces with `delay` between them.
    Trickle { chunk: usize, delay: Duration },
    /// Answer 200 with the whole file even when a Range was asked for.
    IgnoreRange,
}

/// What the server saw, for assertions.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    /// The raw `Range` header, if any.
    pub range: Option<String>,
    pub status: u16,
    pub fault: Option<Fault>,
}

#[derive(Clone)]
enum Route {
    File { body: Arc<Vec<u8>>, headers: Vec<(String, String)> },
    Redirect { location: String, headers: Vec<(String, String)> },
}

#[derive(Default)]
struct ServerState {
    routes: HashMap<String, Route>,
    faults: HashMap<String, VecDeque<Fault>>,
    log: Vec<RequestRecord>,
}

/// A running fault-injecting server; stops when dropped.
pub struct FaultServer {
    addr: SocketAddr,
    state: Arc<Mutex<ServerState>>,
    shutdown: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

fn lock(state: &Mutex<ServerState>) -> MutexGuard<'_, ServerState> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FaultServer {
    pub fn start() -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(ServerState::default()));
        let shutdown = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (state, shutdown) = (state.clone(), shutdown.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if shutdown.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (state, shutdown) = (state.clone(), shutdown.clone());
                    std::thread::spawn(move || {
                        let _ = handle_connection(stream, &state, &shutdown);
                    });
                }
            })
        };
        Ok(Self { addr, state, shutdown, acceptor: Some(acceptor) })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Full URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn serve(&self, path: &str, body: Vec<u8>) {
        self.serve_with_headers(path, body, Vec::new());
    }

    /// Serves `body` at `path`, adding `headers` to every response (e.g. `x-checksum-sha256`).
    pub fn serve_with_headers(&self, path: &str, body: Vec<u8>, headers: Vec<(String, String)>) {
        lock(&self.state).routes.insert(path.to_string(), Route::File { body: Arc::new(body), headers });
    }

    /// Answers `path` with `302 Found` to `location` plus `headers`, as HuggingFace's `resolve/`
    /// URLs do (with `x-linked-etag` and `x-linked-size` on the redirect).
    pub fn redirect(&self, path: &str, location: &str, headers: Vec<(String, String)>) {
        lock(&self.state).routes.insert(path.to_string(), Route::Redirect { location: location.to_string(), headers });
    }

    /// Queues faults for the next requests of `path`, one per request, in order.
    pub fn push_faults(&self, path: &str, faults: impl IntoIterator<Item = Fault>) {
        lock(&self.state).faults.entry(path.to_string()).or_default().extend(faults);
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.state).log.clone()
    }

    pub fn requests_for(&self, path: &str) -> Vec<RequestRecord> {
        self.requests().into_iter().filter(|r| r.path == path).collect()
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

struct Request {
    method: String,
    path: String,
    range: Option<String>,
}

fn read_request(stream: &TcpStream) -> io::Result<Option<Request>> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else { return Ok(None) };
    let mut request = Request { method: method.to_string(), path: path.to_string(), range: None };
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.trim().eq_ignore_ascii_case("range") {
                request.range = Some(value.trim().to_string());
            }
        }
    }
    Ok(Some(request))
}

/// Start offset of a `bytes=N-` / `bytes=N-M` range (only open or single ranges are supported).
fn range_start(range: &str) -> Option<usize> {
    range.strip_prefix("bytes=")?.split('-').next()?.trim().parse().ok()
}

fn write_head(stream: &mut TcpStream, status: u16, headers: &[(String, String)]) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let mut head = format!("HTTP/1.1 {status} {reason}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())
}

fn handle_connection(mut stream: TcpStream, state: &Mutex<ServerState>, shutdown: &AtomicBool) -> io::Result<()> {
    let Some(request) = read_request(&stream)? else { return Ok(()) };
    let (route, fault) = {
        let mut state = lock(state);
        let fault = state.faults.get_mut(&request.path).and_then(VecDeque::pop_front);
        (state.routes.get(&request.path).cloned(), fault)
    };
    let record = |status: u16| RequestRecord {
        method: request.method.clone(),
        path: request.path.clone(),
        range: request.range.clone(),
        status,
        fault: fault.clone(),
    };
    let text_response = |stream: &mut TcpStream, status: u16| -> io::Result<()> {
        let body = format!("status {status}\n");
        write_head(stream, status, &[("Content-Length".into(), body.len().to_string())])?;
        stream.write_all(body.as_bytes())
    };
    if let Some(Fault::Status(status)) = fault {
        lock(state).log.push(record(status));
        return text_response(&mut stream, status);
    }
    let (body, extra_headers) = match route {
        None => {
            lock(state).log.push(record(404));
            return text_response(&mut stream, 404);
        }
        Some(Route::Redirect { location, headers }) => {
            lock(state).log.push(record(302));
            let mut headers = headers;
            headers.push(("Location".into(), location));
            headers.push(("Content-Length".into(), "0".into()));
            return write_head(&mut stream, 302, &headers);
        }
        Some(Route::File { body, headers }) => (body, headers),
    };
    let total = body.len();
    let start = match (&request.range, &fault) {
        (Some(_), Some(Fault::IgnoreRange)) | (None, _) => None,
        (Some(range), _) => range_start(range),
    };
    if let Some(start) = start {
        if start >= total {
            lock(state).log.push(record(416));
            let mut headers = extra_headers;
            headers.push(("Content-Range".into(), format!("bytes */{total}")));
            headers.push(("Content-Length".into(), "0".into()));
            return write_head(&mut stream, 416, &headers);
        }
    }
    let offset = start.unwrap_or(0);
    let mut payload = body[offset..].to_vec();
    if fault == Some(Fault::CorruptBytes) {
        for byte in payload.iter_mut().step_by(97) {
            *byte ^= 0x5a;
        }
    }
    let status = if start.is_some() { 206 } else { 200 };
    let mut headers = extra_headers;
    headers.push(("Accept-Ranges".into(), "bytes".into()));
    if start.is_some() {
        headers.push(("Content-Range".into(), format!("bytes {offset}-{}/{total}", total - 1)));
    }
    let announced = match fault {
        Some(Fault::LyingContentLength(delta)) => (payload.len() as i64 + delta).max(0) as usize,
        _ => payload.len(),
    };
    headers.push(("Content-Length".into(), announced.to_string()));
    lock(state).log.push(record(status));
    if request.method == "HEAD" {
        return write_head(&mut stream, status, &headers);
    }
    write_head(&mut stream, status, &headers)?;
    match fault {
        Some(Fault::DropAfter(n)) => {
            stream.write_all(&payload[..n.min(payload.len())])?;
            stream.flush()?;
            stream.shutdown(std::net::Shutdown::Both)
        }
        Some(Fault::LyingContentLength(_)) => {
            stream.write_all(&payload[..announced.min(payload.len())])?;
            stream.flush()?;
            stream.shutdown(std::net::Shutdown::Both)
        }
        Some(Fault::Trickle { chunk, delay }) => {
            for piece in payload.chunks(chunk.max(1)) {
                if shutdown.load(Ordering::SeqCst) {
                    break;
                }
                stream.write_all(piece)?;
                stream.flush()?;
                std::thread::sleep(delay);
            }
            Ok(())
        }
        _ => stream.write_all(&payload),
    }
}
