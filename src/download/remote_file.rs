//! One HTTP request for a remote file, from a byte offset: follows redirects by hand so that the
//! headers of every hop are seen (HuggingFace announces the LFS sha256 in `x-linked-etag` and the
//! size in `x-linked-size` on the `302` of a `resolve/` URL, not on the CDN's final answer), sends
//! `Range: bytes=N-` to resume, and sorts the status into resume / restart / final error.
//! DESIGN.md "Data and artifacts".
use std::time::Duration;

use ureq::http::HeaderMap;

use super::download_error::DownloadError;
use super::sha256_digest::Sha256Digest;

/// Redirect hops followed before giving up.
pub const MAX_REDIRECTS: u32 = 10;

/// Headers that announce a file's sha256 (hex), in order of preference. `x-linked-etag` is the LFS
/// object id on HuggingFace (only accepted when it is 64 hex digits, i.e. a sha256).
const CHECKSUM_HEADERS: [&str; 3] = ["x-checksum-sha256", "x-linked-etag", "x-sha256"];
const SIZE_HEADER: &str = "x-linked-size";

/// What the server said about the whole file, on any hop.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AnnouncedFile {
    pub sha256: Option<Sha256Digest>,
    pub size: Option<u64>,
}

impl AnnouncedFile {
    fn absorb(&mut self, headers: &HeaderMap) {
        for name in CHECKSUM_HEADERS {
            if self.sha256.is_none() {
                self.sha256 = header(headers, name).and_then(Sha256Digest::parse);
            }
        }
        if self.size.is_none() {
            self.size = header(headers, SIZE_HEADER).and_then(|v| v.trim().parse().ok());
        }
    }
}

/// How the server answered a (possibly ranged) GET.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BodyKind {
    /// 200: the whole file from byte 0 (a Range, if sent, was ignored).
    Whole,
    /// 206: the file from the requested offset on.
    FromOffset,
    /// 416: nothing left after the offset; the partial file may already be complete.
    NothingLeft,
}

pub(crate) struct RemoteResponse {
    pub kind: BodyKind,
    pub final_url: String,
    pub announced: AnnouncedFile,
    /// Size of the whole file according to this response (Content-Range total or Content-Length).
    pub total_size: Option<u64>,
    pub body: ureq::Body,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Resolves a `Location` header against the URL it came from.
pub(crate) fn resolve_location(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_string();
    }
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[scheme_end..].find('/').map_or(base.len(), |i| scheme_end + i);
    if let Some(rest) = location.strip_prefix("//") {
        return format!("{}{rest}", &base[..scheme_end]);
    }
    if location.starts_with('/') {
        return format!("{}{location}", &base[..authority_end]);
    }
    let path = &base[authority_end..];
    let path = path.split(['?', '#']).next().unwrap_or("");
    let dir_end = path.rfind('/').map_or(0, |i| i + 1);
    format!("{}{}{location}", &base[..authority_end], &path[..dir_end])
}

/// Parses `Content-Range: bytes START-END/TOTAL` into (START, TOTAL?).
fn parse_content_range(value: &str) -> Option<(u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes")?.trim();
    let (span, total) = rest.split_once('/')?;
    let start = span.split_once('-')?.0.trim().parse().ok()?;
    let total = total.trim().parse().ok();
    Some((start, total))
}

pub(crate) fn build_agent(connect_timeout: Duration, read_timeout: Duration, user_agent: &str) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_connect(Some(connect_timeout))
        .timeout_recv_response(Some(read_timeout))
        .timeout_per_read(Some(read_timeout))
        .user_agent(user_agent)
        // The system's trust store (and SSL_CERT_FILE), not only the bundled Mozilla roots:
        // networks that reach registries through an intercepting proxy add their CA there.
        .tls_config(ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::PlatformVerifier).build())
        .build()
        .into()
}

fn transport_error(name: &str, url: &str, error: ureq::Error) -> DownloadError {
    match error {
        ureq::Error::BadUri(message) => DownloadError::InvalidUrl { name: name.into(), url: url.into(), message },
        ureq::Error::Http(e) => {
            DownloadError::InvalidUrl { name: name.into(), url: url.into(), message: e.to_string() }
        }
        other => {
            let message = other.to_string();
            if message.contains("certificate") {
                // Retrying cannot fix trust: say so at once.
                return DownloadError::Tls { name: name.into(), url: url.into(), message };
            }
            DownloadError::Network { name: name.into(), url: url.into(), message }
        }
    }
}

/// GETs `url` from byte `offset` (no Range header when 0), following redirects.
pub(crate) fn open(agent: &ureq::Agent, name: &str, url: &str, offset: u64) -> Result<RemoteResponse, DownloadError> {
    let mut current = url.to_string();
    let mut announced = AnnouncedFile::default();
    for _ in 0..=MAX_REDIRECTS {
        let mut request = agent.get(&current);
        if offset > 0 {
            request = request.header("Range", format!("bytes={offset}-"));
        }
        let response = request.call().map_err(|e| transport_error(name, &current, e))?;
        announced.absorb(response.headers());
        let status = response.status().as_u16();
        let protocol = |message: String| DownloadError::Protocol { name: name.into(), url: current.clone(), message };
        match status {
            301 | 302 | 303 | 307 | 308 => {
                let location = header(response.headers(), "location")
                    .ok_or_else(|| protocol(format!("HTTP {status} without a Location header")))?;
                current = resolve_location(&current, location);
                continue;
            }
            200 => {
                let total_size = response.body().content_length();
                return Ok(RemoteResponse {
                    kind: BodyKind::Whole,
                    final_url: current,
                    announced,
                    total_size,
                    body: response.into_body(),
                });
            }
            206 => {
                let range = header(response.headers(), "content-range")
                    .and_then(parse_content_range)
                    .ok_or_else(|| protocol("206 without a valid Content-Range".into()))?;
                if range.0 != offset {
                    return Err(protocol(format!(
                        "asked for bytes from {offset}, got a range starting at {}",
                        range.0
                    )));
                }
                let total_size = range.1.or_else(|| response.body().content_length().map(|n| n + offset));
                return Ok(RemoteResponse {
                    kind: BodyKind::FromOffset,
                    final_url: current,
                    announced,
                    total_size,
                    body: response.into_body(),
                });
            }
            416 if offset > 0 => {
                let total_size = header(response.headers(), "content-range")
                    .and_then(|v| v.trim().strip_prefix("bytes */"))
                    .and_then(|v| v.trim().parse().ok());
                return Ok(RemoteResponse {
                    kind: BodyKind::NothingLeft,
                    final_url: current,
                    announced,
                    total_size,
                    body: response.into_body(),
                });
            }
            408 | 429 | 500..=599 => {
                return Err(DownloadError::HttpServer { name: name.into(), url: current, status });
            }
            _ => return Err(DownloadError::HttpClient { name: name.into(), url: current, status }),
        }
    }
    Err(DownloadError::TooManyRedirects { name: name.into(), url: url.into(), max: MAX_REDIRECTS })
}

/// Asks the server what it announces about `url` (sha256 and size) without downloading the body:
/// the basis of pinning an unpinned manifest entry (`nanochat data pin`).
pub fn probe(agent: &ureq::Agent, url: &str) -> Result<AnnouncedFile, DownloadError> {
    let mut current = url.to_string();
    let mut announced = AnnouncedFile::default();
    for _ in 0..=MAX_REDIRECTS {
        let response = agent.head(&current).call().map_err(|e| transport_error(url, &current, e))?;
        announced.absorb(response.headers());
        let status = response.status().as_u16();
        match status {
            301 | 302 | 303 | 307 | 308 => match header(response.headers(), "location") {
                Some(location) => current = resolve_location(&current, location),
                None => return Ok(announced),
            },
            200..=299 => {
                if announced.size.is_none() {
                    announced.size = header(response.headers(), "content-length").and_then(|v| v.parse().ok());
                }
                return Ok(announced);
            }
            408 | 429 | 500..=599 => return Err(DownloadError::HttpServer { name: url.into(), url: current, status }),
            _ => return Err(DownloadError::HttpClient { name: url.into(), url: current, status }),
        }
    }
    Err(DownloadError::TooManyRedirects { name: url.into(), url: url.into(), max: MAX_REDIRECTS })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_redirect_locations() {
        let base = "https://huggingface.co/datasets/a/b/resolve/rev/shard_00000.parquet";
        assert_eq!(resolve_location(base, "https://cdn.example/x?sig=1"), "https://cdn.example/x?sig=1");
        assert_eq!(resolve_location(base, "/api/x"), "https://huggingface.co/api/x");
        assert_eq!(resolve_location(base, "//cdn.example/y"), "https://cdn.example/y");
        assert_eq!(
            resolve_location(base, "other.parquet"),
            "https://huggingface.co/datasets/a/b/resolve/rev/other.parquet"
        );
    }

    #[test]
    fn parses_content_range() {
        assert_eq!(parse_content_range("bytes 100-199/200"), Some((100, Some(200))));
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(parse_content_range("items 1-2/3"), None);
    }
}
