//! The HuggingFace Hub API calls the dataset downloads make (DESIGN.md "Data and artifacts"):
//! which commit a branch of a dataset points to (`GET /api/datasets/<repo>/revision/<branch>` →
//! `sha`), which files a directory holds at a commit (`GET /api/datasets/<repo>/tree/<commit>/<dir>`
//! → `[{type, path, size, lfs: {oid, size}}]`, paged with `Link: <…>; rel="next"`), and the URL a
//! file is downloaded from (`/datasets/<repo>/resolve/<commit>/<path>`). The LFS `oid` of a file is
//! its sha256: the publisher's checksum, which the downloader then verifies the bytes against.
//! The endpoint is `HF_ENDPOINT` (HuggingFace's own variable) or huggingface.co.
use std::time::Duration;

use serde::Deserialize;

use super::manifest::is_plain_relative_path;
use super::sha256_digest::Sha256Digest;

/// The Hub, or a mirror of its API (HuggingFace's own `HF_ENDPOINT` variable).
pub const DEFAULT_HUB_ENDPOINT: &str = "https://huggingface.co";
/// Pages of one directory listing followed before giving up (the Hub pages 1,000 entries at a time).
const MAX_TREE_PAGES: usize = 100;

/// The Hub endpoint: `HF_ENDPOINT` or huggingface.co.
pub fn hub_endpoint() -> String {
    let endpoint = std::env::var("HF_ENDPOINT").unwrap_or_default();
    let endpoint = endpoint.trim().trim_end_matches('/');
    if endpoint.is_empty() {
        DEFAULT_HUB_ENDPOINT.to_string()
    } else {
        endpoint.to_string()
    }
}

/// True for a full git commit hash (40 hex digits), the only revision a download may name.
pub fn is_commit_hash(revision: &str) -> bool {
    revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit())
}

#[derive(Debug, thiserror::Error)]
pub enum HubApiError {
    #[error("{url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("{url}: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: unexpected answer: {message}")]
    Answer { url: String, message: String },
}

impl HubApiError {
    /// The Hub answered 404: no such dataset, branch, commit or directory.
    pub fn is_not_found(&self) -> bool {
        matches!(self, HubApiError::Status { status: 404, .. })
    }

    /// The URL asked and what went wrong, for an error message of the caller's.
    pub fn into_url_and_message(self) -> (String, String) {
        match self {
            HubApiError::Unreachable { url, message } | HubApiError::Answer { url, message } => (url, message),
            HubApiError::Status { url, status } => (url, format!("HTTP {status}")),
        }
    }
}

/// One file of a directory listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeFile {
    /// Path inside the repository (`ARC-Easy/train-00000-of-00001.parquet`).
    pub path: String,
    /// Size in bytes (of the LFS object for an LFS file, not of its pointer).
    pub size: u64,
    /// The LFS object id, which is the file's sha256; `None` for a file stored in git itself, whose
    /// `oid` is a git blob id (then the downloader's unpinned-checksum policy applies).
    pub sha256: Option<Sha256Digest>,
}

#[derive(Deserialize)]
struct TreeEntry {
    #[serde(rename = "type")]
    kind: String,
    path: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    lfs: Option<LfsInfo>,
}

#[derive(Deserialize)]
struct LfsInfo {
    oid: String,
    #[serde(default)]
    size: Option<u64>,
}

/// The files (not directories) of one page of a tree listing.
pub fn parse_tree_listing(json: &str) -> Result<Vec<TreeFile>, String> {
    let entries: Vec<TreeEntry> = serde_json::from_str(json).map_err(|e| format!("not a tree listing: {e}"))?;
    let mut files = Vec::new();
    for entry in entries.into_iter().filter(|e| e.kind == "file") {
        if !is_plain_relative_path(&entry.path) {
            return Err(format!("{:?} is not a plain relative path", entry.path));
        }
        let (size, sha256) = match entry.lfs {
            Some(lfs) => (lfs.size.or(entry.size), Sha256Digest::parse(&lfs.oid)),
            None => (entry.size, None),
        };
        let size = size.ok_or_else(|| format!("{} has no size", entry.path))?;
        files.push(TreeFile { path: entry.path, size, sha256 });
    }
    Ok(files)
}

/// The `rel="next"` target of a `Link` header, if any.
fn next_page(link: &str) -> Option<&str> {
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let next = params.split(';').any(|p| p.trim().replace(' ', "") == "rel=\"next\"");
        next.then(|| target.trim().trim_start_matches('<').trim_end_matches('>'))
    })
}

/// Percent-encodes everything but unreserved characters and `/` in a repository path.
pub fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A client of one Hub endpoint.
pub struct HubApi {
    endpoint: String,
    agent: ureq::Agent,
}

impl HubApi {
    pub fn new(endpoint: &str) -> Self {
        let agent = super::remote_file::build_agent(
            Duration::from_secs(20),
            Duration::from_secs(60),
            &format!("nanochat/{}", env!("CARGO_PKG_VERSION")),
        );
        Self { endpoint: endpoint.trim().trim_end_matches('/').to_string(), agent }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Where the file at `path` of dataset `repo` at `commit` is downloaded from.
    pub fn file_url(&self, repo: &str, commit: &str, path: &str) -> String {
        format!("{}/datasets/{repo}/resolve/{commit}/{}", self.endpoint, encode_path(path))
    }

    /// The URL [`Self::branch_commit`] asks.
    pub fn revision_url(&self, repo: &str, branch: &str) -> String {
        format!("{}/api/datasets/{repo}/revision/{branch}", self.endpoint)
    }

    /// The first URL [`Self::list_dir`] asks (`dir` empty: the top of the repository).
    pub fn tree_url(&self, repo: &str, commit: &str, dir: &str) -> String {
        let dir = if dir.is_empty() { String::new() } else { format!("/{}", encode_path(dir)) };
        format!("{}/api/datasets/{repo}/tree/{commit}{dir}", self.endpoint)
    }

    /// The commit `branch` of dataset `repo` points to.
    pub fn branch_commit(&self, repo: &str, branch: &str) -> Result<String, HubApiError> {
        let url = self.revision_url(repo, branch);
        let (text, _) = self.get(&url)?;
        #[derive(Deserialize)]
        struct RevisionInfo {
            sha: String,
        }
        let info: RevisionInfo = serde_json::from_str(&text)
            .map_err(|e| HubApiError::Answer { url: url.clone(), message: e.to_string() })?;
        if !is_commit_hash(&info.sha) {
            return Err(HubApiError::Answer { url, message: format!("{:?} is not a commit hash", info.sha) });
        }
        Ok(info.sha.to_ascii_lowercase())
    }

    /// Every file directly inside `dir` of dataset `repo` at `commit` (all pages).
    pub fn list_dir(&self, repo: &str, commit: &str, dir: &str) -> Result<Vec<TreeFile>, HubApiError> {
        let mut url = self.tree_url(repo, commit, dir);
        let mut files = Vec::new();
        for _ in 0..MAX_TREE_PAGES {
            let (text, next) = self.get(&url)?;
            files.extend(
                parse_tree_listing(&text).map_err(|message| HubApiError::Answer { url: url.clone(), message })?,
            );
            match next {
                Some(next) => url = next,
                None => return Ok(files),
            }
        }
        Err(HubApiError::Answer { url, message: format!("more than {MAX_TREE_PAGES} pages") })
    }

    /// The body of `url` (any URL, e.g. a record on a plain mirror).
    pub fn fetch_text(&self, url: &str) -> Result<String, HubApiError> {
        self.get(url).map(|(text, _)| text)
    }

    /// GET `url`: its body and the absolute URL of the next page, if the answer has one.
    fn get(&self, url: &str) -> Result<(String, Option<String>), HubApiError> {
        let unreachable = |message: String| HubApiError::Unreachable { url: url.to_string(), message };
        let mut response = self.agent.get(url).call().map_err(|e| unreachable(e.to_string()))?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(HubApiError::Status { url: url.to_string(), status });
        }
        let next = response
            .headers()
            .get("link")
            .and_then(|v| v.to_str().ok())
            .and_then(next_page)
            .map(|target| super::remote_file::resolve_location(url, target));
        let text = response.body_mut().read_to_string().map_err(|e| unreachable(e.to_string()))?;
        Ok((text, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA_A: &str = "b2c7f0a3a0f7d9e4c1d2e3f405162738495a6b7c8d9e0f1a2b3c4d5e6f708192";

    #[test]
    fn tree_listing_gives_files_with_their_lfs_sha256_and_size() {
        let json = format!(
            r#"[
              {{"type":"directory","oid":"1111111111111111111111111111111111111111","size":0,"path":"ARC-Easy/sub"}},
              {{"type":"file","oid":"2222222222222222222222222222222222222222","size":134,
                "lfs":{{"oid":"{SHA_A}","size":331532,"pointerSize":134}},
                "path":"ARC-Easy/train-00000-of-00001.parquet","xetHash":"abc"}},
              {{"type":"file","oid":"3333333333333333333333333333333333333333","size":1234,"path":"ARC-Easy/README.md"}}
            ]"#
        );
        let files = parse_tree_listing(&json).unwrap();
        assert_eq!(
            files,
            [
                TreeFile {
                    path: "ARC-Easy/train-00000-of-00001.parquet".into(),
                    size: 331_532,
                    sha256: Sha256Digest::parse(SHA_A),
                },
                // Not in LFS: the oid is a git blob id, not a sha256, so nothing pins it.
                TreeFile { path: "ARC-Easy/README.md".into(), size: 1234, sha256: None },
            ]
        );
        assert_eq!(parse_tree_listing("[]").unwrap(), []);
    }

    #[test]
    fn tree_listing_refuses_what_it_cannot_use() {
        for bad in [
            r#"{"error":"Repository not found"}"#,
            r#"[{"type":"file","path":"../escape.parquet","size":3}]"#,
            r#"[{"type":"file","path":"a/.hidden","size":3}]"#,
            r#"[{"type":"file","path":"no-size.parquet"}]"#,
            "not json",
        ] {
            assert!(parse_tree_listing(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn link_headers_name_the_next_page() {
        let link = r#"<https://huggingface.co/api/datasets/x/y/tree/c/data?cursor=ZXlK>; rel="next""#;
        assert_eq!(next_page(link), Some("https://huggingface.co/api/datasets/x/y/tree/c/data?cursor=ZXlK"));
        assert_eq!(next_page(r#"</a>; rel="prev", </b>; rel="next""#), Some("/b"));
        assert_eq!(next_page(r#"</a>; rel="prev""#), None);
    }

    #[test]
    fn urls_name_the_commit_and_encode_paths() {
        let api = HubApi::new("http://127.0.0.1:8080/");
        let commit = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(
            api.file_url("openai/gsm8k", commit, "main/test-00000-of-00001.parquet"),
            format!("http://127.0.0.1:8080/datasets/openai/gsm8k/resolve/{commit}/main/test-00000-of-00001.parquet")
        );
        assert_eq!(
            api.tree_url("openai/gsm8k", commit, "a dir"),
            format!("http://127.0.0.1:8080/api/datasets/openai/gsm8k/tree/{commit}/a%20dir")
        );
        assert_eq!(api.tree_url("o/n", commit, ""), format!("http://127.0.0.1:8080/api/datasets/o/n/tree/{commit}"));
        assert_eq!(api.revision_url("o/n", "main"), "http://127.0.0.1:8080/api/datasets/o/n/revision/main");
        assert!(is_commit_hash(commit) && !is_commit_hash("main") && !is_commit_hash(&commit[1..]));
    }
}
