//! Everything that fetches and verifies a file (NANOCHAT.md §2.1, §5.2, §6.1): manifests with their
//! checksums and the ledger, the parallel resuming downloader, the HuggingFace Hub API, dataset revisions and
//! snapshots; and what the stages fetch with it: the bundled manifests, the pretraining shards' manifest,
//! the chat datasets and the CORE eval bundle. Offline runs fetch the same way from a [`LocalMirror`] on
//! 127.0.0.1 serving the smoke stand-ins compiled into the binary (`chat_smoke`, `smoke_corpus_manifest`).
pub mod bundled_manifests;
pub mod chat_data;
pub mod chat_smoke;
pub mod checksum_ledger;
pub mod dataset_revision;
pub mod download_error;
pub mod download_handle;
pub mod download_progress;
pub mod downloader;
pub mod eval_bundle;
pub mod fineweb_edu_manifest;
pub mod hub_api;
pub mod hub_dataset_manifest;
pub mod hub_dataset_snapshot;
pub mod local_mirror;
pub mod manifest;
pub mod manifest_pinning;
pub mod remote_file;
pub mod retry_policy;
pub mod sha256_digest;
pub mod smoke_corpus_manifest;

pub use chat_data::{
    chat_data_dirs, chat_data_hint, stages_need_chat_data, ChatDownloads, CHAT_DATASETS_MANIFEST_FILE, CHAT_STAGES,
};
pub use checksum_ledger::{ChecksumLedger, LedgerError, LEDGER_FILE_NAME};
pub use download_error::DownloadError;
pub use download_handle::DownloadHandle;
pub use download_progress::DownloadProgress;
pub use downloader::{ChecksumOrigin, DownloadOptions, DownloadedFile, FileStatus, ShardDownloader, VerifyReport};
pub use fineweb_edu_manifest::{fineweb_edu_manifest, FINEWEB_EDU_REVISION, FINEWEB_EDU_SHARD_COUNT};
pub use hub_dataset_manifest::{HubDataset, HubDatasetManifest};
pub use hub_dataset_snapshot::{dataset_snapshot, DatasetSnapshot, SnapshotSource};
pub use local_mirror::LocalMirror;
pub use manifest::{Checksum, DataManifest, ManifestEntry, ManifestError};
pub use manifest_pinning::{pin_from_ledger, pin_from_server, PinReport};
pub use retry_policy::RetryPolicy;
pub use sha256_digest::Sha256Digest;
pub use smoke_corpus_manifest::SmokeCorpusManifest;
