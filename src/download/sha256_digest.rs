//! sha256 digests as used by data manifests, the checksum ledger and the downloader: parsing
//! (64 hex digits, as HuggingFace's `x-linked-etag` and our manifests write them) and hashing of
//! byte slices, readers and files. DESIGN.md "Data and artifacts": every download is verified
//! against a sha256 before it is accepted.
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Size of the read buffer used when hashing files.
const HASH_BUFFER_BYTES: usize = 1 << 20;

/// A sha256 digest, stored and printed as 64 lowercase hex digits.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sha256Digest(String);

impl Sha256Digest {
    /// Parses 64 hex digits (either case), optionally wrapped in quotes or prefixed with `W/` or
    /// `sha256:` as ETag-style headers write them. Anything else (e.g. a 40-digit git sha1) is `None`.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let text = text.strip_prefix("W/").unwrap_or(text);
        let text = text.trim_matches('"');
        let text = text.strip_prefix("sha256:").unwrap_or(text);
        if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            Some(Self(text.to_ascii_lowercase()))
        } else {
            None
        }
    }

    pub fn of_bytes(bytes: &[u8]) -> Self {
        Self::from_hasher(Sha256::new_with_prefix(bytes))
    }

    pub fn of_reader(reader: &mut impl Read) -> io::Result<Self> {
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; HASH_BUFFER_BYTES];
        loop {
            let n = reader.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
        }
        Ok(Self::from_hasher(hasher))
    }

    pub fn of_file(path: &Path) -> io::Result<Self> {
        Self::of_reader(&mut File::open(path)?)
    }

    pub fn from_hasher(hasher: Sha256) -> Self {
        Self(hex::encode(hasher.finalize()))
    }

    pub fn as_hex(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Digest({})", self.0)
    }
}

impl TryFrom<String> for Sha256Digest {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        Self::parse(&text).ok_or_else(|| format!("not a sha256 digest (64 hex digits): {text:?}"))
    }
}

impl From<Sha256Digest> for String {
    fn from(digest: Sha256Digest) -> String {
        digest.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_known_vector() {
        assert_eq!(
            Sha256Digest::of_bytes(b"abc").as_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn parses_etag_forms_and_rejects_other_hashes() {
        let hex = "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD";
        let expected = Sha256Digest::of_bytes(b"abc");
        assert_eq!(Sha256Digest::parse(hex), Some(expected.clone()));
        assert_eq!(Sha256Digest::parse(&format!("\"{hex}\"")), Some(expected.clone()));
        assert_eq!(Sha256Digest::parse(&format!("W/\"{hex}\"")), Some(expected.clone()));
        assert_eq!(Sha256Digest::parse(&format!("sha256:{hex}")), Some(expected));
        assert_eq!(Sha256Digest::parse("\"a9993e364706816aba3e25717850c26c9cd0d89d\""), None);
        assert_eq!(Sha256Digest::parse("unpinned"), None);
    }
}
