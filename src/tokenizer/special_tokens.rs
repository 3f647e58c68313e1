//! nanochat's special tokens (NANOCHAT.md §1.2): 9 strings, never trained, appended after the
//! mergeable vocabulary in this order, so that `id = number_of_mergeable_ranks + index`.

/// NANOCHAT.md §1.2 `SPECIAL_TOKENS`, in reference order.
pub const SPECIAL_TOKENS: [&str; 9] = [
    "<|bos|>",
    "<|user_start|>",
    "<|user_end|>",
    "<|assistant_start|>",
    "<|assistant_end|>",
    "<|python_start|>",
    "<|python_end|>",
    "<|output_start|>",
    "<|output_end|>",
];

/// The document delimiter prepended to every document (NANOCHAT.md §2.2).
pub const BOS_TOKEN: &str = "<|bos|>";

/// Number of special tokens; the trainer is asked for `vocab_size - NUM_SPECIAL_TOKENS`.
pub const NUM_SPECIAL_TOKENS: u32 = SPECIAL_TOKENS.len() as u32;

/// Id of special token `name` for a vocabulary with `num_mergeable` BPE tokens.
pub fn special_token_id(name: &str, num_mergeable: u32) -> Option<u32> {
    SPECIAL_TOKENS.iter().position(|s| *s == name).map(|i| num_mergeable + i as u32)
}
