//! Manifests of HuggingFace dataset repositories (manifests/data/chat_datasets.toml: the datasets of
//! the chat stages, NANOCHAT.md §5.2). A dataset's files are not listed one by one: the manifest names
//! the repository, the commit (or `unpinned`), which files are needed as `dir/glob` patterns and the
//! license; the files themselves, with their sizes and the publisher's LFS sha256s, come from the
//! Hub's listing at that commit and are recorded per base dir (see
//! [`hub_dataset_snapshot`](super::hub_dataset_snapshot)).
//!
//! ```toml
//! description = "Datasets of the chat stages (NANOCHAT.md §5.2)"
//! [[dataset]]
//! repo = "allenai/ai2_arc"
//! revision = "unpinned"    # or the 40-hex commit
//! files = ["ARC-Easy/train-*.parquet", "ARC-Easy/test-*.parquet"]
//! license = "CC BY-SA 4.0"
//! ```
use std::collections::HashSet;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::checksum_ledger::LEDGER_FILE_NAME;
use super::dataset_revision::REVISION_RECORD_FILE;
use super::hub_api::is_commit_hash;
use super::manifest::{is_plain_relative_path, ManifestError, UNPINNED};
use crate::fsutil::PARTIAL_SUFFIX;

/// One dataset repository and the files of it that are needed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubDataset {
    /// `owner/name` on the Hub.
    pub repo: String,
    /// The commit to download (40 hex digits), or `unpinned`: then `main` is resolved once per base dir.
    pub revision: String,
    /// `dir/glob` patterns of the needed files (`*` matches within the file name only).
    pub files: Vec<String>,
    /// Who publishes the data and under which terms.
    pub license: String,
}

impl HubDataset {
    /// The commit this build pins, if any.
    pub fn pinned_commit(&self) -> Option<&str> {
        is_commit_hash(&self.revision).then_some(self.revision.as_str())
    }

    /// The parsed `files` patterns (valid once the manifest parsed).
    pub fn patterns(&self) -> Vec<FilePattern> {
        self.files.iter().filter_map(|p| FilePattern::parse(p).ok()).collect()
    }

    /// Whether `path` (inside the repository) is one of the needed files.
    pub fn wants(&self, path: &str) -> bool {
        self.patterns().iter().any(|p| p.matches(path))
    }

    fn validate(&self) -> Result<(), ManifestError> {
        let invalid = |reason: String| ManifestError::InvalidEntry { name: self.repo.clone(), reason };
        let name_ok = |part: &str| {
            !part.is_empty()
                && !part.starts_with('.')
                && part.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        };
        match self.repo.split_once('/') {
            Some((owner, name)) if name_ok(owner) && name_ok(name) => {}
            _ => return Err(invalid("repo must be `owner/name`".into())),
        }
        if self.revision != UNPINNED && !is_commit_hash(&self.revision) {
            return Err(invalid(format!("revision {:?} must be a 40-hex commit or {UNPINNED:?}", self.revision)));
        }
        if self.files.is_empty() {
            return Err(invalid("files lists no pattern".into()));
        }
        for pattern in &self.files {
            FilePattern::parse(pattern).map_err(|reason| invalid(format!("files pattern {pattern:?}: {reason}")))?;
        }
        if self.license.trim().is_empty() {
            return Err(invalid("license note is empty".into()));
        }
        Ok(())
    }
}

/// A `dir/glob` pattern: the files directly inside `dir` whose name matches `glob` (`*` = any run of
/// characters). `dir` may be nested or empty (the top of the repository).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilePattern {
    dir: String,
    glob: String,
}

impl FilePattern {
    pub fn parse(pattern: &str) -> Result<Self, String> {
        let (dir, glob) = pattern.rsplit_once('/').unwrap_or(("", pattern));
        if dir.contains('*') {
            return Err("`*` may only appear in the file name".into());
        }
        if !is_plain_relative_path(pattern) {
            return Err("must be a relative path of plain names (no `..`, nothing hidden)".into());
        }
        if glob.ends_with(PARTIAL_SUFFIX)
            || (dir.is_empty() && [REVISION_RECORD_FILE, LEDGER_FILE_NAME].contains(&glob))
        {
            return Err("names a file the downloader keeps for itself".into());
        }
        Ok(Self { dir: dir.to_string(), glob: glob.to_string() })
    }

    /// The directory the Hub is asked to list ("" = the top of the repository).
    pub fn dir(&self) -> &str {
        &self.dir
    }

    /// Whether `path` (inside the repository) is directly inside `dir` with a matching name.
    pub fn matches(&self, path: &str) -> bool {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        dir == self.dir && glob_matches(&self.glob, name)
    }
}

impl std::fmt::Display for FilePattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.dir.is_empty() {
            f.write_str(&self.glob)
        } else {
            write!(f, "{}/{}", self.dir, self.glob)
        }
    }
}

/// `*` matches any run of characters (possibly none); everything else matches itself.
fn glob_matches(glob: &str, name: &str) -> bool {
    let mut parts = glob.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else { return false };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else { return rest.is_empty() };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// A list of dataset repositories, in download order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubDatasetManifest {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, rename = "dataset")]
    pub datasets: Vec<HubDataset>,
}

impl HubDatasetManifest {
    /// Parses the TOML `text` of the manifest at `path` (the path is for messages only).
    pub fn parse(text: &str, path: &str) -> Result<Self, ManifestError> {
        let manifest: Self = toml::from_str(text)
            .map_err(|e| ManifestError::Parse { path: PathBuf::from(path), message: e.to_string() })?;
        let mut seen = HashSet::new();
        for dataset in &manifest.datasets {
            dataset.validate()?;
            if !seen.insert(dataset.repo.as_str()) {
                return Err(ManifestError::InvalidEntry {
                    name: dataset.repo.clone(),
                    reason: "listed more than once".into(),
                });
            }
        }
        Ok(manifest)
    }

    pub fn dataset(&self, repo: &str) -> Option<&HubDataset> {
        self.datasets.iter().find(|d| d.repo == repo)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
description = "two datasets"

[[dataset]]
repo = "allenai/ai2_arc"
revision = "unpinned"
files = ["ARC-Easy/train-*.parquet", "ARC-Easy/test-*.parquet"]
license = "CC BY-SA 4.0"

[[dataset]]
repo = "openai/gsm8k"
revision = "0123456789abcdef0123456789abcdef01234567"
files = ["main/train-*.parquet"]
license = "MIT"
"#;

    #[test]
    fn parses_datasets_with_patterns_and_revisions() {
        let manifest = HubDatasetManifest::parse(SAMPLE, "sample.toml").unwrap();
        assert_eq!(manifest.datasets.len(), 2);
        let arc = manifest.dataset("allenai/ai2_arc").unwrap();
        assert_eq!(arc.pinned_commit(), None);
        assert_eq!(arc.patterns().iter().map(|p| p.dir()).collect::<Vec<_>>(), ["ARC-Easy", "ARC-Easy"]);
        assert!(arc.wants("ARC-Easy/train-00000-of-00001.parquet"));
        assert!(arc.wants("ARC-Easy/test-00000-of-00001.parquet"));
        assert!(!arc.wants("ARC-Easy/validation-00000-of-00001.parquet"));
        assert!(!arc.wants("ARC-Challenge/train-00000-of-00001.parquet"));
        assert!(!arc.wants("ARC-Easy/sub/train-00000-of-00001.parquet"), "`*` never crosses a directory");
        let gsm8k = manifest.dataset("openai/gsm8k").unwrap();
        assert_eq!(gsm8k.pinned_commit(), Some("0123456789abcdef0123456789abcdef01234567"));
    }

    #[test]
    fn refuses_bad_repos_revisions_patterns_and_duplicates() {
        let cases = [
            ("repo = \"allenai/ai2_arc\"", "repo = \"ai2_arc\""),
            ("repo = \"allenai/ai2_arc\"", "repo = \"allenai/../x\""),
            ("revision = \"unpinned\"", "revision = \"main\""),
            ("\"ARC-Easy/train-*.parquet\", ", "\"../train-*.parquet\", "),
            ("\"ARC-Easy/train-*.parquet\", ", "\"ARC-*/train.parquet\", "),
            ("\"ARC-Easy/train-*.parquet\", ", "\".git/x\", "),
            ("\"ARC-Easy/train-*.parquet\", ", "\"revision.json\", "),
            ("\"ARC-Easy/train-*.parquet\", \"ARC-Easy/test-*.parquet\"", ""),
            ("license = \"MIT\"", "license = \" \""),
            ("repo = \"openai/gsm8k\"", "repo = \"allenai/ai2_arc\""),
        ];
        for (from, to) in cases {
            assert!(SAMPLE.contains(from), "{from}");
            let text = SAMPLE.replace(from, to);
            assert!(HubDatasetManifest::parse(&text, "x.toml").is_err(), "{to:?} accepted");
        }
        let unknown = SAMPLE.replace("license = \"MIT\"", "license = \"MIT\"\nsplit = \"train\"");
        assert!(matches!(HubDatasetManifest::parse(&unknown, "x.toml"), Err(ManifestError::Parse { .. })));
    }

    #[test]
    fn globs_match_like_a_shell_within_one_name() {
        for (glob, name, expected) in [
            ("train-*.parquet", "train-00000-of-00001.parquet", true),
            ("train-*.parquet", "train-.parquet", true),
            ("train-*.parquet", "test-00000-of-00001.parquet", false),
            ("train-*.parquet", "train-0.parquet.partial", false),
            ("*", "anything", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXcYb", false),
            ("a*a", "a", false),
            ("exact.txt", "exact.txt", true),
            ("exact.txt", "exact.txt2", false),
        ] {
            assert_eq!(glob_matches(glob, name), expected, "{glob} vs {name}");
        }
        let top = FilePattern::parse("words_*.txt").unwrap();
        assert_eq!(top.dir(), "");
        assert!(top.matches("words_alpha.txt") && !top.matches("x/words_alpha.txt"));
        assert_eq!(top.to_string(), "words_*.txt");
        assert_eq!(FilePattern::parse("a/b/c-*.parquet").unwrap().dir(), "a/b");
    }
}
