//! The CORE eval bundle on disk (NANOCHAT.md §6.1): `eval_bundle.zip` of
//! manifests/data/eval_bundle.toml fetched by the verifying downloader into `data/eval-bundle/`
//! (resumed, retried, sha256-checked; the sha256 is not published, so until the manifest is pinned
//! the first download's hash is recorded in that directory's ledger and every later use must
//! match it), then unzipped into `<base>/eval_bundle/` atomically: everything is extracted into a
//! fresh temporary directory beside it and renamed into place once complete. Entries that are
//! absolute, climb out with `..`, or are symbolic links are refused. The zip holds an
//! `eval_bundle/` directory (as the reference expects); a zip with `core.yaml` at its top works too.
//!
//! The smoke preset uses the stand-in of manifests/data/core_smoke/ (compiled in by build.rs): its
//! files are zipped into `<base>/mirror/core-smoke/eval_bundle.zip`, served on 127.0.0.1 and fetched
//! through the same path, pinned to the `zip_sha256` of its SOURCES.toml. The extracted stand-in is
//! marked, and a base dir never mixes it with the real bundle.
use std::fs::File;
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde::Deserialize;

use super::bundled_manifests::{required_manifest, with_mirror};
use super::chat_data::StandInSource;
use super::downloader::{ChecksumOrigin, DownloadError, DownloadOptions, ShardDownloader};
use super::hub::StandInMismatch;
use super::local_mirror::LocalMirror;
use super::manifest::{
    Checksum, ChecksumLedger, LedgerError, ManifestEntry, ManifestError, Sha256Digest, LEDGER_FILE_NAME,
};
use crate::paths::Paths;
use crate::progress::{Progress, Unit};

include!(concat!(env!("OUT_DIR"), "/core_smoke_files.rs"));

/// The bundle's data manifest (manifests/data/eval_bundle.toml) as `data pin` names it.
pub const EVAL_BUNDLE_MANIFEST_NAME: &str = "eval-bundle";
/// The file the manifest lists.
pub const EVAL_BUNDLE_ZIP: &str = "eval_bundle.zip";
/// The task list inside a bundle directory.
pub const CORE_YAML: &str = "core.yaml";
/// Present in `<base>/eval_bundle/` while it holds the smoke stand-in.
pub const STAND_IN_MARKER: &str = ".smoke-stand-in";
/// Where the stand-in's SOURCES.toml lives in the repository (for messages).
pub const CORE_SMOKE_SOURCES_FILE: &str = "manifests/data/core_smoke/SOURCES.toml";
/// The directory inside the zip that becomes `<base>/eval_bundle/`.
const ZIP_ROOT: &str = "eval_bundle";

#[derive(Debug, thiserror::Error)]
pub enum EvalBundleError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("{0}\nRun the same command again to resume (the partial file is kept)")]
    Download(#[from] DownloadError),
    #[error("{path} is not a readable zip archive: {message}; delete it and run again to download it anew")]
    Zip { path: PathBuf, message: String },
    #[error("{zip} holds the entry {entry:?}, which {reason}; refusing to extract it")]
    UnsafeEntry { zip: PathBuf, entry: String, reason: &'static str },
    #[error("{zip} has neither eval_bundle/core.yaml nor core.yaml")]
    NotABundle { zip: PathBuf },
    #[error("{dir} exists but has no core.yaml: delete it, then run again")]
    Incomplete { dir: PathBuf },
    #[error(transparent)]
    Mismatch(#[from] StandInMismatch),
    #[error("{CORE_SMOKE_SOURCES_FILE}: {0}")]
    StandIn(String),
    #[error("cannot serve the stand-in bundle from {root} on 127.0.0.1: {source}")]
    Serve { root: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> EvalBundleError + '_ {
    move |source| EvalBundleError::Io { path: path.to_path_buf(), source }
}

/// Where the bundle comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BundleSource {
    /// The manifest's URL, or `<mirror_url>/eval_bundle.zip` when the mirror is not empty.
    Manifest { mirror_url: String },
    /// The smoke stand-in compiled into the binary.
    SmokeStandIn,
}

/// `<base>/eval_bundle/`, downloaded and extracted first when it is not there. Processes sharing
/// the base dir take turns (a file lock), so only the first downloads.
pub fn ensure_eval_bundle(paths: &Paths, source: &BundleSource) -> Result<PathBuf, EvalBundleError> {
    let dir = paths.eval_bundle();
    let stand_in = *source == BundleSource::SmokeStandIn;
    if bundle_in_place(&dir, stand_in)? {
        return Ok(dir);
    }
    let download_dir = paths.shards(EVAL_BUNDLE_MANIFEST_NAME);
    std::fs::create_dir_all(&download_dir).map_err(io_error(&download_dir))?;
    let lock_path = download_dir.join(".download.lock");
    let _lock = crate::fsutil::lock_exclusive(&lock_path, "another nanochat process downloading the eval bundle")
        .map_err(io_error(&lock_path))?;
    if bundle_in_place(&dir, stand_in)? {
        return Ok(dir);
    }
    let manifest = required_manifest(EVAL_BUNDLE_MANIFEST_NAME)?;
    let (mut entry, _server) = match source {
        BundleSource::Manifest { mirror_url } => (with_mirror(&manifest, mirror_url).files[0].clone(), None),
        BundleSource::SmokeStandIn => {
            let root = paths.base().join("mirror").join("core-smoke");
            let sources = stand_in_sources()?;
            let zip = root.join(EVAL_BUNDLE_ZIP);
            crate::fsutil::write_if_changed(&zip, &stand_in_zip(&sources)?).map_err(io_error(&zip))?;
            let server =
                LocalMirror::serve(&root).map_err(|source| EvalBundleError::Serve { root: root.clone(), source })?;
            log::info!("serving the CORE smoke stand-in {} at {}", root.display(), server.url());
            let mut entry = with_mirror(&manifest, &server.url()).files[0].clone();
            entry.sha256 = Checksum::Pinned(sources.zip_sha256.clone());
            entry.size = Some(sources.zip_size);
            (entry, Some(server))
        }
    };
    entry.name = EVAL_BUNDLE_ZIP.into();
    let zip = download(&entry, &download_dir)?;
    extract_bundle(&zip, &dir, stand_in)?;
    log::info!("placed the eval bundle at {}", dir.display());
    Ok(dir)
}

/// Whether `dir` holds a bundle of the wanted kind (an error when it holds the other kind).
fn bundle_in_place(dir: &Path, stand_in: bool) -> Result<bool, EvalBundleError> {
    if !dir.exists() {
        return Ok(false);
    }
    if !dir.join(CORE_YAML).is_file() {
        return Err(EvalBundleError::Incomplete { dir: dir.to_path_buf() });
    }
    let texts = ["the CORE smoke stand-in", "the real eval bundle"];
    StandInMismatch::check(dir, texts, dir.join(STAND_IN_MARKER).exists(), stand_in)?;
    Ok(true)
}

/// Fetches `entry` into `dir` (kept there: a later run re-hashes instead of downloading again).
fn download(entry: &ManifestEntry, dir: &Path) -> Result<PathBuf, EvalBundleError> {
    let ledger = ChecksumLedger::open(&dir.join(LEDGER_FILE_NAME))?;
    let bar: Arc<Mutex<Option<Progress>>> = Arc::new(Mutex::new(None));
    let shown = bar.clone();
    let downloader = ShardDownloader::new(DownloadOptions::default()).with_ledger(ledger).with_progress(move |p| {
        let mut bar = shown.lock().unwrap_or_else(PoisonError::into_inner);
        if bar.is_none() && p.sizes_pending == 0 && p.bytes_total > 0 {
            *bar = Some(Progress::new(EVAL_BUNDLE_ZIP, p.bytes_total, Unit::Bytes));
        }
        if let Some(bar) = bar.as_mut() {
            bar.set_position(p.bytes_done);
        }
    });
    log::info!("fetching {} from {}", entry.name, entry.url);
    let file = downloader.download(entry, dir)?;
    drop(bar.lock().unwrap_or_else(PoisonError::into_inner).take());
    if file.checksum_origin == ChecksumOrigin::FirstDownload {
        log::warn!(
            "{} is unpinned: its sha256 {} was recorded in {} at this first download and later uses must match it; \
             `nanochat data pin --manifest {EVAL_BUNDLE_MANIFEST_NAME} --from ledger` turns it into a pinned entry",
            file.name,
            file.sha256,
            dir.join(LEDGER_FILE_NAME).display()
        );
    }
    Ok(file.path)
}

/// Unzips `zip` into `dest` (which must not exist) through a temporary directory beside it.
pub fn extract_bundle(zip: &Path, dest: &Path, stand_in: bool) -> Result<(), EvalBundleError> {
    let parent = dest.parent().unwrap_or(Path::new("."));
    let tmp = parent.join(format!(".eval_bundle.extracting-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io_error(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io_error(&tmp))?;
    let result = extract_into(zip, &tmp).and_then(|()| {
        let root = if tmp.join(ZIP_ROOT).join(CORE_YAML).is_file() {
            tmp.join(ZIP_ROOT)
        } else if tmp.join(CORE_YAML).is_file() {
            tmp.clone()
        } else {
            return Err(EvalBundleError::NotABundle { zip: zip.to_path_buf() });
        };
        if stand_in {
            let marker = root.join(STAND_IN_MARKER);
            std::fs::write(&marker, b"the smoke stand-in (manifests/data/core_smoke/), not the real bundle\n")
                .map_err(io_error(&marker))?;
        }
        std::fs::rename(&root, dest).map_err(io_error(dest))
    });
    if tmp.exists() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// Why an entry name may not be extracted, if it may not.
fn unsafe_entry_reason(name: &str) -> Option<&'static str> {
    let bytes = name.as_bytes();
    if name.starts_with('/') || name.starts_with('\\') || (bytes.len() >= 2 && bytes[1] == b':') {
        return Some("is an absolute path");
    }
    if name.split(['/', '\\']).any(|part| part == "..") {
        return Some("climbs out of the bundle directory with `..`");
    }
    if name.contains('\0') {
        return Some("has a NUL byte in its name");
    }
    None
}

fn extract_into(zip_path: &Path, dest: &Path) -> Result<(), EvalBundleError> {
    let zip_err =
        |e: zip::result::ZipError| EvalBundleError::Zip { path: zip_path.to_path_buf(), message: e.to_string() };
    let file = File::open(zip_path).map_err(io_error(zip_path))?;
    let mut archive = zip::ZipArchive::new(file).map_err(zip_err)?;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(zip_err)?;
        let name = entry.name().to_string();
        let unsafe_entry =
            |reason| EvalBundleError::UnsafeEntry { zip: zip_path.to_path_buf(), entry: name.clone(), reason };
        if let Some(reason) = unsafe_entry_reason(&name) {
            return Err(unsafe_entry(reason));
        }
        const S_IFMT: u32 = 0o170000;
        const S_IFLNK: u32 = 0o120000;
        if entry.unix_mode().is_some_and(|mode| mode & S_IFMT == S_IFLNK) {
            return Err(unsafe_entry("is a symbolic link"));
        }
        let path = dest.join(name.trim_end_matches('/'));
        if entry.is_dir() {
            std::fs::create_dir_all(&path).map_err(io_error(&path))?;
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_error(parent))?;
        }
        let mut out = File::create(&path).map_err(io_error(&path))?;
        std::io::copy(&mut entry, &mut out).map_err(|e| EvalBundleError::Zip {
            path: zip_path.to_path_buf(),
            message: format!("entry {name}: {e}"),
        })?;
    }
    Ok(())
}

/// The stand-in's SOURCES.toml: the pinned zip and its files.
#[derive(Clone, Debug, Deserialize)]
pub struct StandInBundle {
    pub zip_sha256: Sha256Digest,
    pub zip_size: u64,
    #[serde(default)]
    pub file: Vec<StandInSource>,
}

pub fn stand_in_sources() -> Result<StandInBundle, EvalBundleError> {
    toml::from_str(CORE_SMOKE_SOURCES).map_err(|e| EvalBundleError::StandIn(e.to_string()))
}

/// The stand-in zip: every listed file as a stored entry at its path (under `eval_bundle/`), with
/// the zip format's earliest timestamp, in SOURCES.toml order, so its bytes never change.
pub fn stand_in_zip(sources: &StandInBundle) -> Result<Vec<u8>, EvalBundleError> {
    let mut cursor = std::io::Cursor::new(Vec::new());
    write_zip(
        &mut cursor,
        sources.file.iter().map(|s| {
            let bytes = CORE_SMOKE_FILES.iter().find(|(p, _)| *p == s.path).map(|(_, b)| *b);
            (s.path.as_str(), bytes)
        }),
    )?;
    Ok(cursor.into_inner())
}

fn write_zip<'a, W: Write + Seek>(
    out: &mut W,
    files: impl Iterator<Item = (&'a str, Option<&'a [u8]>)>,
) -> Result<(), EvalBundleError> {
    let err = |e: &dyn std::fmt::Display| EvalBundleError::StandIn(format!("building the zip: {e}"));
    let mut writer = zip::ZipWriter::new(out);
    let options = zip::write::FileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .last_modified_time(zip::DateTime::default())
        .unix_permissions(0o644);
    for (path, bytes) in files {
        let bytes = bytes.ok_or_else(|| EvalBundleError::StandIn(format!("{path} is listed but not embedded")))?;
        writer.start_file(path, options).map_err(|e| err(&e))?;
        writer.write_all(bytes).map_err(|e| err(&e))?;
    }
    writer.finish().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stand_in_zip_is_pinned_and_holds_every_listed_file() {
        let sources = stand_in_sources().unwrap();
        assert_eq!(sources.file.len(), CORE_SMOKE_FILES.len(), "build.rs embeds exactly the listed files");
        for source in &sources.file {
            let (_, bytes) = CORE_SMOKE_FILES.iter().find(|(p, _)| *p == source.path).unwrap();
            assert_eq!(Sha256Digest::of_bytes(bytes), source.sha256, "{}", source.path);
            assert_eq!(bytes.len() as u64, source.size, "{}", source.path);
        }
        let zip = stand_in_zip(&sources).unwrap();
        let (sha, size) = (Sha256Digest::of_bytes(&zip), zip.len() as u64);
        assert_eq!(
            (&sha, size),
            (&sources.zip_sha256, sources.zip_size),
            "update {CORE_SMOKE_SOURCES_FILE}: zip_sha256 = \"{sha}\", zip_size = {size}"
        );
        assert_eq!(stand_in_zip(&sources).unwrap(), zip, "the same bytes every time");
    }

    #[test]
    fn extraction_places_the_bundle_and_marks_the_stand_in() {
        let dir = tempfile::tempdir().unwrap();
        let zip = dir.path().join("b.zip");
        std::fs::write(&zip, stand_in_zip(&stand_in_sources().unwrap()).unwrap()).unwrap();
        let dest = dir.path().join("eval_bundle");
        extract_bundle(&zip, &dest, true).unwrap();
        assert!(dest.join("core.yaml").is_file() && dest.join("eval_data/smoke/facts.jsonl").is_file());
        assert!(dest.join(STAND_IN_MARKER).is_file());
        assert!(bundle_in_place(&dest, true).unwrap());
        let err = bundle_in_place(&dest, false).unwrap_err().to_string();
        assert!(err.contains("holds the CORE smoke stand-in") && err.contains("--base-dir"), "{err}");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(leftovers.len(), 2, "no temporary directory left: {leftovers:?}");
    }

    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut cursor = std::io::Cursor::new(Vec::new());
        write_zip(&mut cursor, entries.iter().map(|(p, b)| (*p, Some(*b)))).unwrap();
        cursor.into_inner()
    }

    #[test]
    fn escaping_absolute_and_symlink_entries_are_refused_and_nothing_is_placed() {
        let dir = tempfile::tempdir().unwrap();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (zip_of(&[("eval_bundle/core.yaml", b"x"), ("eval_bundle/../../evil", b"x")]), "`..`"),
            (zip_of(&[("/etc/evil", b"x")]), "absolute"),
            (zip_of(&[("C:\\evil", b"x")]), "absolute"),
        ];
        for (bytes, reason) in cases {
            let zip = dir.path().join("bad.zip");
            std::fs::write(&zip, bytes).unwrap();
            let dest = dir.path().join("eval_bundle");
            let err = extract_bundle(&zip, &dest, false).unwrap_err().to_string();
            assert!(err.contains(reason), "{err}");
            assert!(!dest.exists());
        }
        // A symbolic link entry.
        let mut cursor = std::io::Cursor::new(Vec::new());
        {
            let mut writer = zip::ZipWriter::new(&mut cursor);
            writer.add_symlink("eval_bundle/link", "/etc/passwd", zip::write::FileOptions::default()).unwrap();
            writer.finish().unwrap();
        }
        let zip = dir.path().join("link.zip");
        std::fs::write(&zip, cursor.into_inner()).unwrap();
        let err = extract_bundle(&zip, &dir.path().join("eval_bundle"), false).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
        assert!(!dir.path().join("eval_bundle").exists());
    }

    #[test]
    fn a_deflated_zip_with_core_yaml_at_the_top_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut cursor = std::io::Cursor::new(Vec::new());
        {
            let mut writer = zip::ZipWriter::new(&mut cursor);
            let options = zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Deflated);
            writer.start_file("core.yaml", options).unwrap();
            writer.write_all(b"icl_tasks: []\n".repeat(50).as_slice()).unwrap();
            writer.add_directory("eval_data/", options).unwrap();
            writer.finish().unwrap();
        }
        let zip = dir.path().join("top.zip");
        std::fs::write(&zip, cursor.into_inner()).unwrap();
        let dest = dir.path().join("eval_bundle");
        extract_bundle(&zip, &dest, false).unwrap();
        assert_eq!(std::fs::read(dest.join("core.yaml")).unwrap(), b"icl_tasks: []\n".repeat(50));
        assert!(dest.join("eval_data").is_dir() && !dest.join(STAND_IN_MARKER).exists());
        let not_a_bundle = dir.path().join("other.zip");
        std::fs::write(&not_a_bundle, zip_of(&[("readme.txt", b"hi")])).unwrap();
        let err = extract_bundle(&not_a_bundle, &dir.path().join("b2"), false).unwrap_err().to_string();
        assert!(err.contains("neither eval_bundle/core.yaml nor core.yaml"), "{err}");
        assert!(bundle_in_place(&dest, false).unwrap());
    }
}
