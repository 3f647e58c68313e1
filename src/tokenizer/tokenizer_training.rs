//! The `tok_train` driver (NANOCHAT.md §1.4): documents cut by the doc_cap / max_chars rule,
//! a `BpeTrainer` asked for `vocab_size - 9` tokens (the specials are appended afterwards,
//! §1.2-1.3), and the resulting encoder, merges and input statistics.

use std::time::Instant;

use super::bpe_encoder::BpeEncoder;
use super::bpe_trainer::{BpeTrainer, TrainProgress};
use super::capped_documents::CappedDocuments;
use super::error::{Result, TokenizerError};
use super::merges::Merges;
use super::special_tokens::NUM_SPECIAL_TOKENS;

/// `scripts/tok_train.py` arguments.
#[derive(Clone, Copy, Debug)]
pub struct TokenizerTrainingConfig {
    /// Total vocabulary size, special tokens included (65,536 in [A']).
    pub vocab_size: u32,
    /// Characters kept per document (10,000).
    pub doc_cap: usize,
    /// Character budget; the document crossing it is still used (2,000,000,000 in the speedrun).
    pub max_chars: u64,
}

/// What a training run produced.
pub struct TrainedTokenizer {
    pub encoder: BpeEncoder,
    pub merges: Merges,
    pub documents: u64,
    pub chars: u64,
    pub bytes: u64,
    pub train_seconds: f64,
}

/// Trains nanochat's tokenizer on a stream of documents.
pub fn train_tokenizer<I>(
    docs: I,
    config: TokenizerTrainingConfig,
    progress: impl FnMut(&TrainProgress),
) -> Result<TrainedTokenizer>
where
    I: Iterator<Item = String>,
{
    let mergeable = config
        .vocab_size
        .checked_sub(NUM_SPECIAL_TOKENS)
        .filter(|&v| v >= 256)
        .ok_or(TokenizerError::VocabTooSmall { requested: config.vocab_size })?;
    let start = Instant::now();
    let mut trainer = BpeTrainer::new(mergeable)?;
    let mut capped = CappedDocuments::new(docs, config.doc_cap, config.max_chars);
    trainer.count_documents(&mut capped)?;
    let (documents, bytes) = trainer.counted();
    let merges = trainer.train(progress)?;
    let encoder = BpeEncoder::from_merges(&merges)?;
    Ok(TrainedTokenizer {
        encoder,
        merges,
        documents,
        chars: capped.chars(),
        bytes,
        train_seconds: start.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_the_budget_and_appends_specials() {
        let docs = (0..100).map(|i| format!("doc number {i} says hello hello hello"));
        let config = TokenizerTrainingConfig { vocab_size: 256 + 9 + 20, doc_cap: 10, max_chars: 95 };
        let t = train_tokenizer(docs, config, |_| {}).unwrap();
        // 10 chars per doc: 10 documents reach 100 > 95, the tenth is included.
        assert_eq!((t.documents, t.chars, t.bytes), (10, 100, 100));
        assert_eq!(t.encoder.vocab_size(), 256 + 9 + t.merges.len() as u32);
        assert_eq!(t.encoder.bos_id().unwrap(), 256 + t.merges.len() as u32);
        assert!(
            train_tokenizer(std::iter::empty(), TokenizerTrainingConfig { vocab_size: 264, ..config }, |_| {}).is_err()
        );
    }
}
