//! What can go wrong while downloading one file, and which failures are worth another attempt
//! (timeouts, resets, 5xx, short or corrupt bodies) versus which are final (4xx, local disk
//! errors, ledger conflicts). DESIGN.md "Data and artifacts"; NANOCHAT.md §2.1 (retries).
use std::path::PathBuf;
use std::sync::Arc;

use super::checksum_ledger::LedgerError;
use super::sha256_digest::Sha256Digest;

#[derive(Clone, Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("{name}: HTTP {status} from {url} (not retried: check the URL or revision in the manifest)")]
    HttpClient { name: String, url: String, status: u16 },
    #[error("{name}: HTTP {status} from {url}")]
    HttpServer { name: String, url: String, status: u16 },
    #[error("{name}: network error talking to {url}: {message}")]
    Network { name: String, url: String, message: String },
    #[error(
        "{name}: TLS failure talking to {url}: {message} (not retried: install the CA certificates of your network \
         into the system trust store, or point SSL_CERT_FILE at a bundle that has them)"
    )]
    Tls { name: String, url: String, message: String },
    #[error("{name}: invalid URL {url}: {message}")]
    InvalidUrl { name: String, url: String, message: String },
    #[error("{name}: more than {max} redirects starting at {url}")]
    TooManyRedirects { name: String, url: String, max: u32 },
    #[error("{name}: unexpected response from {url}: {message}")]
    Protocol { name: String, url: String, message: String },
    #[error("{name}: expected {expected} bytes, {context} {actual}")]
    SizeMismatch { name: String, expected: u64, actual: u64, context: &'static str },
    #[error("{name}: sha256 mismatch: expected {expected} ({expected_from}), downloaded bytes hash to {actual}")]
    ChecksumMismatch { name: String, expected: Sha256Digest, actual: Sha256Digest, expected_from: &'static str },
    #[error("{name}: cannot {action} {path}: {source}")]
    Io { name: String, action: &'static str, path: PathBuf, source: Arc<std::io::Error> },
    #[error("{name}: {source}")]
    Ledger { name: String, source: Arc<LedgerError> },
    #[error("{name}: download cancelled (the partial file is kept and resumes next time)")]
    Cancelled { name: String },
    #[error("{name}: gave up after {attempts} attempts; last error: {last}")]
    GaveUp { name: String, attempts: u32, last: Box<DownloadError> },
}

impl DownloadError {
    /// Whether another attempt may succeed (transient network or server trouble, bad bytes).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            DownloadError::HttpServer { .. }
                | DownloadError::Network { .. }
                | DownloadError::Protocol { .. }
                | DownloadError::SizeMismatch { .. }
                | DownloadError::ChecksumMismatch { .. }
        )
    }

    /// The failure that ended the download (looks through [`DownloadError::GaveUp`]).
    pub fn root(&self) -> &DownloadError {
        match self {
            DownloadError::GaveUp { last, .. } => last.root(),
            other => other,
        }
    }

    pub(crate) fn io(name: &str, action: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        DownloadError::Io { name: name.to_string(), action, path: path.to_path_buf(), source: Arc::new(source) }
    }
}
