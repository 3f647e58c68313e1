//! The data layer (NANOCHAT.md §2): manifests of every download, the parallel verifying
//! downloader, the distributed tokenizing dataloader, the pretraining shards in parquet (reading, listing, the train/val split, writing),
//! and the offline smoke corpus built from documentation shipped in pinned PyPI packages; the chat
//! stages' HuggingFace datasets at recorded commits and their smoke stand-ins (§5.2); the CORE eval
//! bundle and its smoke stand-in (§6.1).
pub mod batch_source;
pub mod bundled_manifests;
pub mod chat_data;
pub mod chat_smoke;
pub mod checksum_ledger;
pub mod dataloader;
pub mod dataset_revision;
pub mod documents;
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
pub mod markup_cleaner;
pub mod parquet_rows;
pub mod parquet_shards;
pub mod remote_file;
pub mod retry_policy;
pub mod section_splitter;
pub mod sha256_digest;
pub mod shard_source;
pub mod shard_writer;
pub mod smoke_corpus;
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
pub use parquet_shards::{
    list_shards, shards_for, split_shards, ParquetShard, RowGroupBatch, RowGroupIter, ShardError, Split,
};
pub use retry_policy::RetryPolicy;
pub use sha256_digest::Sha256Digest;
pub use shard_writer::{write_shard, ShardSummary, ShardWriter, ShardWriterOptions};
pub use smoke_corpus::{
    build_smoke_corpus, smoke_corpus_is_present, SmokeCorpusError, SmokeCorpusReport, SMOKE_CORPUS_MANIFEST,
};
pub use smoke_corpus_manifest::SmokeCorpusManifest;
