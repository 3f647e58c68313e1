//! The offline smoke corpus: pretraining shards built from documentation shipped in pinned PyPI packages
//! (cleaned of markup, split into sections), so `make smoke` runs every stage without the internet. A
//! stand-in for FineWeb-EDU, never a replacement: the report marks runs on it as smoke runs.
pub mod markup_cleaner;
pub mod section_splitter;
pub mod smoke_corpus;

pub use smoke_corpus::{
    build_smoke_corpus, smoke_corpus_is_present, SmokeCorpusError, SmokeCorpusReport, SMOKE_CORPUS_MANIFEST,
};
