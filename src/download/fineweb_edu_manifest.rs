//! Generates the manifest of the pretraining shards, so the 1,823-entry list is computed rather
//! than typed (NANOCHAT.md §2.1: `karpathy/fineweb-edu-100b-shuffle`, `shard_{index:05d}.parquet`,
//! `MAX_SHARD = 1822`). URLs name a fixed dataset revision instead of `main`, so a rewritten
//! dataset can never change what a pinned run trains on.
use super::manifest::{Checksum, DataManifest, ManifestEntry, ManifestError};

/// HuggingFace dataset repository of the shuffled, re-sharded FineWeb-Edu sample (§2.1).
pub const FINEWEB_EDU_REPO: &str = "karpathy/fineweb-edu-100b-shuffle";
/// Number of shards, `shard_00000.parquet` … `shard_01822.parquet` (§2.1, `MAX_SHARD = 1822`).
pub const FINEWEB_EDU_SHARD_COUNT: usize = 1823;
/// The dataset commit the URLs point at. Placeholder until someone with network access reads the
/// dataset's commit hash (HuggingFace "Files and versions") and pins it here; until then each base
/// dir resolves `main` once and records the commit (download/dataset_revision.rs), never following
/// `main` from one shard to the next.
pub const FINEWEB_EDU_REVISION: &str = "REVISION-NOT-PINNED-YET";
/// License note carried by every shard entry (FineWeb-Edu is published under ODC-By 1.0).
pub const FINEWEB_EDU_LICENSE: &str =
    "ODC-By 1.0 (HuggingFaceFW/fineweb-edu, re-sharded by karpathy); subject to CommonCrawl terms of use";

/// File name of shard `index` (§2.1: `shard_{index:05d}.parquet`).
pub fn fineweb_edu_shard_name(index: usize) -> String {
    format!("shard_{index:05}.parquet")
}

/// Download URL of shard `index` at `revision` on the Hub at `endpoint` (https://huggingface.co).
pub fn fineweb_edu_shard_url(endpoint: &str, revision: &str, index: usize) -> String {
    format!("{endpoint}/datasets/{FINEWEB_EDU_REPO}/resolve/{revision}/{}", fineweb_edu_shard_name(index))
}

/// True while [`FINEWEB_EDU_REVISION`] is still the placeholder (the CLI should say so).
pub fn fineweb_edu_revision_is_placeholder(revision: &str) -> bool {
    !super::hub_api::is_commit_hash(revision)
}

/// Manifest of the first `count` shards (at most [`FINEWEB_EDU_SHARD_COUNT`]), all unpinned:
/// sizes and checksums come from the server (`x-linked-size`, `x-linked-etag`) and the ledger.
pub fn fineweb_edu_manifest(endpoint: &str, revision: &str, count: usize) -> Result<DataManifest, ManifestError> {
    let files = (0..count.min(FINEWEB_EDU_SHARD_COUNT))
        .map(|index| ManifestEntry {
            name: fineweb_edu_shard_name(index),
            url: fineweb_edu_shard_url(endpoint, revision, index),
            size: None,
            sha256: Checksum::Unpinned,
            license: FINEWEB_EDU_LICENSE.to_string(),
        })
        .collect();
    DataManifest::new(format!("FineWeb-Edu 100B shuffle at revision {revision} (NANOCHAT.md §2.1)"), files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_all_shards_at_the_pinned_revision() {
        let manifest = fineweb_edu_manifest("https://huggingface.co", FINEWEB_EDU_REVISION, usize::MAX).unwrap();
        assert_eq!(manifest.files.len(), 1823);
        assert_eq!(manifest.files[0].name, "shard_00000.parquet");
        assert_eq!(manifest.files[1822].name, "shard_01822.parquet");
        assert_eq!(
            manifest.files[7].url,
            format!("https://huggingface.co/datasets/karpathy/fineweb-edu-100b-shuffle/resolve/{FINEWEB_EDU_REVISION}/shard_00007.parquet")
        );
        assert!(manifest.files.iter().all(|f| !f.url.contains("/resolve/main/")));
        assert!(fineweb_edu_revision_is_placeholder(FINEWEB_EDU_REVISION));
        assert!(!fineweb_edu_revision_is_placeholder("0123456789abcdef0123456789abcdef01234567"));
        assert_eq!(fineweb_edu_manifest("http://127.0.0.1:1", "x", 3).unwrap().files.len(), 3);
    }
}
