//! The `tok-eval` stage (NANOCHAT.md §1.6, the reference's `tok_eval.py`): compression (bytes per
//! token) of our tokenizer against GPT-2 and GPT-4 on news, Korean, code, math and science samples
//! (written for this project) and on the first row group of the first train shard and of the val
//! shard; the "Tokenizer evaluation" report section.
use std::path::PathBuf;

use crate::config::RunConfig;
use crate::data::parquet_shards::{shards_for, ParquetShard, ShardError, Split};
use crate::paths::Paths;
use crate::report_section::ReportSection;
use crate::tokenizer::baseline::{BaselineTokenizer, GPT2_PATTERN, GPT4_PATTERN};
use crate::tokenizer::{artifacts, TokenizerError};

/// Why `tok-eval` stopped.
#[derive(Debug, thiserror::Error)]
pub enum TokEvalError {
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Shards(#[from] ShardError),
    #[error("our tokenizer does not round-trip the {text} text")]
    RoundTrip { text: String },
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// (name, text) of the built-in samples.
const SAMPLES: &[(&str, &str)] = &[
    ("news", include_str!("../tokenizer/eval_samples/news.txt")),
    ("korean", include_str!("../tokenizer/eval_samples/korean.txt")),
    ("code", include_str!("../tokenizer/eval_samples/code.txt")),
    ("math", include_str!("../tokenizer/eval_samples/math.txt")),
    ("science", include_str!("../tokenizer/eval_samples/science.txt")),
];

/// (label, file under data/tokenizers, split pattern) of the baselines.
const BASELINES: &[(&str, &str, &str)] =
    [("GPT-2", "r50k_base.tiktoken", GPT2_PATTERN), ("GPT-4", "cl100k_base.tiktoken", GPT4_PATTERN)].as_slice();

struct Row {
    name: String,
    bytes: usize,
    ours: usize,
}

pub fn run(config: &RunConfig, paths: &Paths) -> Result<(), TokEvalError> {
    let ours = artifacts::load(&paths.tokenizer())?;
    let mut texts: Vec<(String, String)> = SAMPLES.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect();
    let dir = paths.shards(&config.data.manifest);
    for (label, split) in [("fwe-train", Split::Train), ("fwe-val", Split::Val)] {
        match shards_for(&dir, split).ok().and_then(|s| s.into_iter().next()) {
            Some(shard) => {
                let docs = ParquetShard::open(&shard)?.read_row_group(0)?;
                texts.push((label.to_string(), docs.join("\n")));
            }
            None => log::warn!("no {label} shard in {}; leaving it out", dir.display()),
        }
    }
    let mut rows = Vec::new();
    for (name, text) in &texts {
        let ids = ours.encode_ordinary(text);
        if ours.decode(&ids)? != text.as_bytes() {
            return Err(TokEvalError::RoundTrip { text: name.clone() });
        }
        rows.push(Row { name: name.clone(), bytes: text.len(), ours: ids.len() });
    }

    let mut section = ReportSection::new("Tokenizer evaluation");
    for (label, file, pattern) in BASELINES {
        let path = paths.baseline_tokenizers().join(file);
        if !config.tok_eval.compare_baselines || !path.exists() {
            let why = if config.tok_eval.compare_baselines {
                format!("{} not found (`nanochat data download` fetches it)", path.display())
            } else {
                "tok_eval.compare_baselines is off".to_string()
            };
            section = section.markdown(format!("### Comparison with {label}\n\nNot available: {why}.\n"));
            continue;
        }
        let baseline = BaselineTokenizer::from_rank_file(label, &path, pattern)?;
        let mut table = format!(
            "### Comparison with {label}\n\n| Text Type | Bytes | {label} Tokens | {label} Ratio | Ours Tokens | Ours Ratio | Relative Diff % |\n|-----------|-------|--------------|--------------|-------------|------------|-----------------|\n"
        );
        for (row, (_, text)) in rows.iter().zip(&texts) {
            let theirs = baseline.encode(text)?.len();
            let diff = 100.0 * (theirs as f64 - row.ours as f64) / theirs.max(1) as f64;
            table += &format!(
                "| {} | {} | {} | {:.2} | {} | {:.2} | {:+.1}% |\n",
                row.name,
                row.bytes,
                theirs,
                row.bytes as f64 / theirs.max(1) as f64,
                row.ours,
                row.bytes as f64 / row.ours.max(1) as f64,
                diff
            );
        }
        section = section.markdown(table);
    }
    let mut ours_table =
        "### Ours\n\n| Text Type | Bytes | Tokens | Ratio |\n|-----------|-------|--------|-------|\n".to_string();
    for row in &rows {
        ours_table += &format!(
            "| {} | {} | {} | {:.2} |\n",
            row.name,
            row.bytes,
            row.ours,
            row.bytes as f64 / row.ours.max(1) as f64
        );
        log::info!(
            "{:>10}: {:>8} bytes, {:>7} tokens, ratio {:.2}",
            row.name,
            row.bytes,
            row.ours,
            row.bytes as f64 / row.ours.max(1) as f64
        );
    }
    section
        .markdown(ours_table)
        .write(&paths.report())
        .map_err(|source| TokEvalError::Write { path: paths.report(), source })?;
    Ok(())
}
