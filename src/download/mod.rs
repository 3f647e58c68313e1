//! Everything that fetches and verifies a file (NANOCHAT.md §2.1, §5.2, §6.1): manifests with their
//! checksums and the ledger ([`manifest`]), the parallel resuming downloader ([`downloader`]), the
//! HuggingFace Hub API, dataset revisions and snapshots ([`hub`]); and what the stages fetch with it:
//! the bundled manifests and the pretraining shards' manifest, the chat datasets and the CORE eval
//! bundle. Offline runs fetch the same way from a [`LocalMirror`] on 127.0.0.1 serving the smoke
//! stand-ins compiled into the binary.
pub mod bundled_manifests;
pub mod chat_data;
pub mod downloader;
pub mod eval_bundle;
pub mod hub;
pub mod local_mirror;
pub mod manifest;

pub use bundled_manifests::{
    shard_dataset, shard_file_name, CorpusLayout, ExpectedShard, ShardDataset, SmokeCorpusManifest, SourcePackage,
    CLIMBMIX, FINEWEB_EDU, SHARD_DATASETS,
};
pub use chat_data::{
    chat_data_dirs, chat_data_hint, stages_need_chat_data, ChatDataError, ChatDownloads, CHAT_DATASETS_MANIFEST_FILE,
    CHAT_STAGES,
};
pub use downloader::{
    ChecksumOrigin, DownloadError, DownloadHandle, DownloadOptions, DownloadProgress, DownloadedFile, FileStatus,
    RetryPolicy, ShardDownloader, VerifyReport,
};
pub use hub::{
    dataset_revision, dataset_snapshot, hub_endpoint, DatasetRevision, DatasetSnapshot, HubDataset, HubDatasetManifest,
    RevisionError, SnapshotSource,
};
pub use local_mirror::LocalMirror;
pub use manifest::{
    pin_from_ledger, pin_from_server, Checksum, ChecksumLedger, ChecksumSource, DataManifest, LedgerError,
    ManifestEntry, ManifestError, PinReport, Sha256Digest, LEDGER_FILE_NAME,
};
