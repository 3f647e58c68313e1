//! The `tok-train` stage (NANOCHAT.md §1.4, the reference's `tok_train.py`): trains the BPE tokenizer
//! on the first train shards (or on given files), writes tok/ and the "Tokenizer training" report
//! section.
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::config::{ConfigError, RunConfig};
use crate::data::documents::{self, DocumentsError};
use crate::data::parquet_shards::{list_shards, ShardError};
use crate::paths::Paths;
use crate::progress::{Progress, Unit};
use crate::report_section::ReportSection;
use crate::tokenizer::{
    artifacts, token_byte_lengths, train_tokenizer, TokenizerError, TokenizerTrainingConfig, NUM_SPECIAL_TOKENS,
};

/// Round-tripped after training, as the reference's sanity check (§1.4).
const SANITY_TEXT: &str = "Hello world! This is a test.\nNumbers: 123, 4567, 89\nContractions: I'm, you're, it's\nSpecial chars: @#$%^&*()\nUnicode: 你好世界 🌍";

/// Why `tok-train` stopped.
#[derive(Debug, thiserror::Error)]
pub enum TokTrainError {
    #[error(
        "tok-train reads the first {wanted} shard(s) of {} and one more must exist for validation, but {found} \
         are there (run `nanochat data download --preset {preset}`)",
        dir.display()
    )]
    TooFewShards { dir: PathBuf, wanted: usize, found: usize, preset: String },
    #[error("{source} (run `nanochat data download --preset {preset}`)")]
    NoShards { source: ShardError, preset: String },
    #[error("reading training documents: {0}")]
    Documents(#[from] DocumentsError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error("the trained tokenizer does not round-trip its sanity text")]
    RoundTrip,
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// The first `n` shards, read in order until the character budget is spent (§1.4). A fixed list, so
/// shards still arriving from the background download do not change what the tokenizer saw; at least
/// one more shard must exist to serve as validation (§2.1).
pub fn tokenizer_shards(dir: &Path, n: usize, preset: &str) -> Result<Vec<PathBuf>, TokTrainError> {
    let all = list_shards(dir).map_err(|source| TokTrainError::NoShards { source, preset: preset.into() })?;
    if all.len() <= n {
        let (dir, preset) = (dir.to_path_buf(), preset.to_string());
        return Err(TokTrainError::TooFewShards { dir, wanted: n, found: all.len(), preset });
    }
    Ok(all.into_iter().take(n).collect())
}

pub fn run(config: &RunConfig, paths: &Paths, input: Option<&Path>) -> Result<(), TokTrainError> {
    let t = &config.tok_train;
    let (source, batches): (String, documents::DocumentBatches) = match input {
        Some(input) => {
            (input.display().to_string(), Box::new(documents::file_documents(documents::input_files(input)?)))
        }
        None => {
            let dir = paths.shards(&config.data.manifest);
            let shards = tokenizer_shards(&dir, config.data.tokenizer_shards as usize, &config.run.name)?;
            (
                format!("{} train shard(s) in {}", shards.len(), dir.display()),
                Box::new(documents::shard_documents(shards)),
            )
        }
    };
    log::info!(
        "training a {}-token tokenizer on {source} (max {} chars, docs capped at {} chars)",
        t.vocab_size,
        t.max_chars,
        t.doc_cap
    );

    // Documents stream through; a reading error stops training with that error.
    let mut read_error = None;
    let docs = batches
        .map_while(|b| match b {
            Ok(docs) => Some(docs),
            Err(e) => {
                read_error = Some(e);
                None
            }
        })
        .flatten();
    let merges_wanted = u64::from(t.vocab_size.saturating_sub(NUM_SPECIAL_TOKENS + 256));
    let mut progress: Option<Progress> = None;
    let started = Instant::now();
    let trained = train_tokenizer(
        docs,
        TokenizerTrainingConfig { vocab_size: t.vocab_size, doc_cap: t.doc_cap as usize, max_chars: t.max_chars },
        |p| {
            let bar = progress.get_or_insert_with(|| Progress::new("merges", merges_wanted, Unit::Items));
            bar.set_position(p.merges_done as u64);
        },
    )?;
    drop(progress);
    if let Some(e) = read_error {
        return Err(TokTrainError::Documents(e));
    }
    let train_time = started.elapsed().as_secs_f64();
    let round_trip = trained.encoder.decode(&trained.encoder.encode_ordinary(SANITY_TEXT))?;
    if round_trip != SANITY_TEXT.as_bytes() {
        return Err(TokTrainError::RoundTrip);
    }

    let dir = paths.tokenizer();
    let files = artifacts::save(&dir, &trained.encoder)?;
    config.write_beside(&dir)?;
    let bytes: Vec<f64> = token_byte_lengths(&trained.encoder).into_iter().filter(|&b| b > 0).map(f64::from).collect();
    let mean = bytes.iter().sum::<f64>() / bytes.len().max(1) as f64;
    let std = (bytes.iter().map(|b| (b - mean).powi(2)).sum::<f64>() / bytes.len().max(1) as f64).sqrt();
    ReportSection::new("Tokenizer training")
        .value("input", source)
        .value("max_chars", t.max_chars)
        .value("doc_cap", t.doc_cap)
        .value("vocab_size", t.vocab_size)
        .value("documents", trained.documents)
        .value("chars", trained.chars)
        .value("train_time", train_time)
        .value("num_special_tokens", NUM_SPECIAL_TOKENS)
        .value("token_bytes_min", bytes.iter().cloned().fold(f64::INFINITY, f64::min) as u64)
        .value("token_bytes_max", bytes.iter().cloned().fold(0.0, f64::max) as u64)
        .value("token_bytes_mean", mean)
        .value("token_bytes_std", std)
        .write(&paths.report())
        .map_err(|source| TokTrainError::Write { path: paths.report(), source })?;
    log::info!(
        "trained {} tokens on {} documents ({} chars) in {train_time:.1} s; wrote {}",
        trained.encoder.vocab_size(),
        trained.documents,
        trained.chars,
        files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ")
    );
    Ok(())
}
