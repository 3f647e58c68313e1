//! Pinning a manifest: turns `unpinned` entries into pinned ones, from the checksum ledger (what
//! earlier downloads verified) or from what the server announces without downloading
//! (HuggingFace: `x-linked-etag` = LFS sha256, `x-linked-size`). The basis of `nanochat data pin`
//! (DESIGN.md "Data and artifacts"). Nothing is ever guessed: entries without an announced or
//! recorded checksum stay unpinned.
use super::checksum_ledger::ChecksumLedger;
use super::downloader::ShardDownloader;
use super::manifest::{Checksum, DataManifest};

/// What a pinning pass did.
#[derive(Debug, Default)]
pub struct PinReport {
    pub pinned: Vec<String>,
    /// Entries left unpinned, with the reason.
    pub unpinned: Vec<(String, String)>,
}

/// Pins every unpinned entry that the ledger has a record for (sha256 and size).
pub fn pin_from_ledger(manifest: &mut DataManifest, ledger: &ChecksumLedger) -> PinReport {
    let mut report = PinReport::default();
    for entry in manifest.files.iter_mut().filter(|e| e.sha256 == Checksum::Unpinned) {
        match ledger.get(&entry.name) {
            Some(record) if entry.size.is_none_or(|size| size == record.size) => {
                entry.sha256 = Checksum::Pinned(record.sha256.clone());
                entry.size = Some(record.size);
                report.pinned.push(entry.name.clone());
            }
            Some(record) => report.unpinned.push((
                entry.name.clone(),
                format!("ledger size {} differs from manifest size {:?}", record.size, entry.size),
            )),
            None => report.unpinned.push((entry.name.clone(), "not in the ledger".into())),
        }
    }
    report
}

/// Pins every unpinned entry whose server announces a sha256 (one HEAD request per entry, with
/// redirects followed by hand). Network failures of single entries are reported, not fatal.
pub fn pin_from_server(manifest: &mut DataManifest, downloader: &ShardDownloader) -> PinReport {
    let mut report = PinReport::default();
    for entry in manifest.files.iter_mut().filter(|e| e.sha256 == Checksum::Unpinned) {
        match downloader.probe(&entry.url) {
            Ok(announced) => match announced.sha256 {
                Some(sha256) => {
                    entry.sha256 = Checksum::Pinned(sha256);
                    entry.size = announced.size.or(entry.size);
                    report.pinned.push(entry.name.clone());
                }
                None => report.unpinned.push((entry.name.clone(), "the server announces no sha256".into())),
            },
            Err(error) => report.unpinned.push((entry.name.clone(), error.to_string())),
        }
    }
    report
}
