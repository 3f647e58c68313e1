//! `LocalMirror`: a small static file server on 127.0.0.1 for the files under one directory, so data
//! built or carried on this machine (the offline smoke corpus, the chat stand-ins laid out like the
//! Hub's API and resolve URLs) reaches its destination through the same downloader as remote data
//! (DESIGN.md "Data and artifacts": every file is fetched and verified the same way). HTTP/1.1, GET
//! and HEAD, single byte ranges (`Range: bytes=a-b`, `a-`, `-n`), `/a/b/c` serves `<root>/a/b/c`;
//! 404 for anything that is not a regular file under the root reached through plain visible names
//! (no `..`, nothing hidden, no `*.partial`, no symlink leading outside the root). One thread
//! accepts, one thread per connection, one request per connection; the server stops when dropped.
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a connection may stay silent (request or client reading) before it is dropped.
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest request head accepted (request line and headers).
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// A running server; dropping it stops accepting and joins the accept thread.
pub struct LocalMirror {
    addr: SocketAddr,
    shutdown: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl LocalMirror {
    /// Serves the files of `root` on 127.0.0.1 at a free port.
    pub fn serve(root: &Path) -> io::Result<Self> {
        if !root.is_dir() {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("{} is not a directory", root.display())));
        }
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shutdown = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (shutdown, root) = (shutdown.clone(), root.to_path_buf());
            std::thread::Builder::new().name("local-mirror".into()).spawn(move || {
                for stream in listener.incoming() {
                    if shutdown.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let root = root.clone();
                    let _ = std::thread::Builder::new()
                        .name("local-mirror-conn".into())
                        .spawn(move || handle_connection(stream, &root));
                }
            })?
        };
        Ok(Self { addr, shutdown, acceptor: Some(acceptor) })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (no trailing slash); a file is at `<url>/<name>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for LocalMirror {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

struct Request {
    method: String,
    target: String,
    range: Option<String>,
}

/// The byte range a request asks for, resolved against the file size.
#[derive(Debug, PartialEq, Eq)]
enum RangeAnswer {
    /// No (usable) Range header: the whole file with 200.
    Whole,
    /// 206 with bytes `start..=end`.
    Part { start: u64, end: u64 },
    /// 416.
    Unsatisfiable,
}

fn handle_connection(stream: TcpStream, root: &Path) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let Ok(reader_stream) = stream.try_clone() else { return };
    let mut reader = BufReader::new(reader_stream);
    let mut writer = stream;
    match read_request(&mut reader) {
        Ok(Some(request)) => {
            if let Err(e) = respond(&mut writer, &request, root) {
                log::debug!("local mirror: {} {}: {e}", request.method, request.target);
            }
        }
        Ok(None) => {}
        Err(_) => {
            let _ = write_head(&mut writer, "400 Bad Request", &[("Content-Length", "0".into())]);
        }
    }
    let _ = writer.flush();
}

/// Reads the request line and headers; `None` when the client closed without sending anything.
fn read_request(reader: &mut impl BufRead) -> io::Result<Option<Request>> {
    let mut line = String::new();
    let mut head_bytes = reader.read_line(&mut line)?;
    if head_bytes == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "malformed request line"));
    };
    let mut request = Request { method: method.to_string(), target: target.to_string(), range: None };
    loop {
        let mut header = String::new();
        let n = reader.read_line(&mut header)?;
        head_bytes += n;
        if n == 0 || header == "\r\n" || header == "\n" {
            break;
        }
        if head_bytes > MAX_HEAD_BYTES {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "request head too long"));
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.trim().eq_ignore_ascii_case("range") {
                request.range = Some(value.trim().to_string());
            }
        }
    }
    Ok(Some(request))
}

/// The relative path a request target names, if it is one this server may serve: plain visible
/// names separated by `/`.
fn relative_path_of(target: &str) -> Option<String> {
    let path = target.split(['?', '#']).next()?;
    let path = percent_decode(path.strip_prefix('/')?)?;
    let plain =
        crate::download::manifest::is_plain_relative_path(&path) && !path.ends_with(crate::fsutil::PARTIAL_SUFFIX);
    plain.then_some(path)
}

/// The file at `relative` under `root`, if it is a regular file that really lies under the root.
fn open_under(root: &Path, relative: &str) -> Option<(File, u64)> {
    let path = root.join(relative);
    let real = path.canonicalize().ok()?;
    if !real.starts_with(root.canonicalize().ok()?) {
        return None;
    }
    let file = File::open(&real).ok()?;
    let meta = file.metadata().ok()?;
    meta.is_file().then_some((file, meta.len()))
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Resolves a `Range` header value against a file of `size` bytes. Only single `bytes=` ranges
/// are honoured; anything else (multiple ranges, other units, garbage) gets the whole file, as
/// RFC 9110 allows a server to ignore Range.
fn resolve_range(range: Option<&str>, size: u64) -> RangeAnswer {
    let Some(spec) = range.and_then(|r| r.trim().strip_prefix("bytes=")) else { return RangeAnswer::Whole };
    if spec.contains(',') {
        return RangeAnswer::Whole;
    }
    let Some((first, last)) = spec.split_once('-') else { return RangeAnswer::Whole };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // Suffix range: the last N bytes.
        return match last.parse::<u64>() {
            Ok(0) => RangeAnswer::Unsatisfiable,
            Ok(n) if size > 0 => RangeAnswer::Part { start: size.saturating_sub(n), end: size - 1 },
            Ok(_) => RangeAnswer::Unsatisfiable,
            Err(_) => RangeAnswer::Whole,
        };
    }
    let Ok(start) = first.parse::<u64>() else { return RangeAnswer::Whole };
    let end = if last.is_empty() {
        size.saturating_sub(1)
    } else {
        match last.parse::<u64>() {
            Ok(end) if end >= start => end.min(size.saturating_sub(1)),
            _ => return RangeAnswer::Whole,
        }
    };
    if start >= size {
        return RangeAnswer::Unsatisfiable;
    }
    RangeAnswer::Part { start, end }
}

fn respond(out: &mut TcpStream, request: &Request, root: &Path) -> io::Result<()> {
    let head_only = match request.method.as_str() {
        "GET" => false,
        "HEAD" => true,
        _ => {
            return write_head(
                out,
                "405 Method Not Allowed",
                &[("Allow", "GET, HEAD".into()), ("Content-Length", "0".into())],
            )
        }
    };
    let file = relative_path_of(&request.target).and_then(|relative| open_under(root, &relative));
    let Some((mut file, size)) = file else {
        let body = b"not found\n";
        let headers = [("Content-Type", "text/plain".into()), ("Content-Length", body.len().to_string())];
        write_head(out, "404 Not Found", &headers)?;
        return if head_only { Ok(()) } else { out.write_all(body) };
    };
    let (status, start, length, mut headers) = match resolve_range(request.range.as_deref(), size) {
        RangeAnswer::Whole => ("200 OK", 0, size, Vec::new()),
        RangeAnswer::Part { start, end } => (
            "206 Partial Content",
            start,
            end - start + 1,
            vec![("Content-Range", format!("bytes {start}-{end}/{size}"))],
        ),
        RangeAnswer::Unsatisfiable => {
            let headers = [("Content-Range", format!("bytes */{size}")), ("Content-Length", "0".into())];
            return write_head(out, "416 Range Not Satisfiable", &headers);
        }
    };
    headers.push(("Content-Length", length.to_string()));
    headers.push(("Content-Type", "application/octet-stream".to_string()));
    headers.push(("Accept-Ranges", "bytes".to_string()));
    write_head(out, status, &headers)?;
    if head_only || length == 0 {
        return Ok(());
    }
    file.seek(SeekFrom::Start(start))?;
    io::copy(&mut file.take(length), out).map(drop)
}

fn write_head(out: &mut impl Write, status: &str, headers: &[(&str, String)]) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\nServer: nanochat-local-mirror\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_resolve_like_rfc_9110() {
        use RangeAnswer::*;
        assert_eq!(resolve_range(None, 10), Whole);
        assert_eq!(resolve_range(Some("bytes=0-"), 10), Part { start: 0, end: 9 });
        assert_eq!(resolve_range(Some("bytes=4-"), 10), Part { start: 4, end: 9 });
        assert_eq!(resolve_range(Some("bytes=2-5"), 10), Part { start: 2, end: 5 });
        assert_eq!(resolve_range(Some("bytes=2-50"), 10), Part { start: 2, end: 9 });
        assert_eq!(resolve_range(Some("bytes=-3"), 10), Part { start: 7, end: 9 });
        assert_eq!(resolve_range(Some("bytes=-30"), 10), Part { start: 0, end: 9 });
        assert_eq!(resolve_range(Some("bytes=10-"), 10), Unsatisfiable);
        assert_eq!(resolve_range(Some("bytes=0-"), 0), Unsatisfiable);
        assert_eq!(resolve_range(Some("bytes=5-2"), 10), Whole);
        assert_eq!(resolve_range(Some("bytes=0-1,4-5"), 10), Whole);
        assert_eq!(resolve_range(Some("items=0-1"), 10), Whole);
    }

    #[test]
    fn only_plain_visible_paths_are_served() {
        assert_eq!(relative_path_of("/shard_00000.parquet").as_deref(), Some("shard_00000.parquet"));
        assert_eq!(relative_path_of("/a%20b.txt?x=1").as_deref(), Some("a b.txt"));
        assert_eq!(relative_path_of("/sub/dir/file.parquet").as_deref(), Some("sub/dir/file.parquet"));
        for bad in [
            "/",
            "/../etc/passwd",
            "/%2e%2e%2fsecret",
            "/sub/%2e%2e/%2e%2e/secret",
            "/.hidden",
            "/sub/.git/config",
            "/sub//file",
            "/sub/",
            "/a\\b",
            "/x.parquet.partial",
            "/sub/x.parquet.partial",
            "x",
        ] {
            assert_eq!(relative_path_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn symlinks_out_of_the_root_are_not_followed() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.txt"), b"secret").unwrap();
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("sub")).unwrap();
        std::fs::write(root.path().join("sub/inner.txt"), b"inner").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.txt"), root.path().join("link.txt")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("out")).unwrap();
        assert_eq!(open_under(root.path(), "sub/inner.txt").map(|(_, size)| size), Some(5));
        assert!(open_under(root.path(), "link.txt").is_none());
        assert!(open_under(root.path(), "out/secret.txt").is_none());
        assert!(open_under(root.path(), "sub").is_none(), "a directory is not a file");
    }
}
