//! Bytes per token id for bits-per-byte (NANOCHAT.md §1.5 `token_bytes.pt`): as the reference
//! computes it in [A]–[B], the UTF-8 length of the lossily decoded token (each invalid
//! sequence becomes a 3-byte U+FFFD), and 0 for special tokens.

use super::bpe_encoder::BpeEncoder;

/// Length in bytes of `String::from_utf8_lossy(token)`.
pub fn lossy_utf8_len(token: &[u8]) -> u32 {
    String::from_utf8_lossy(token).len() as u32
}

/// One entry per id of `encoder` (mergeable then special tokens).
pub fn token_byte_lengths(encoder: &BpeEncoder) -> Vec<u32> {
    let mut out: Vec<u32> = encoder.mergeable_tokens().iter().map(|t| lossy_utf8_len(t)).collect();
    out.extend(std::iter::repeat_n(0, encoder.special_tokens().len()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lossy_lengths() {
        assert_eq!(lossy_utf8_len(b" the"), 4);
        assert_eq!(lossy_utf8_len("한".as_bytes()), 3);
        // First two bytes of "한" (ED 95 9C): one maximal invalid subpart -> one U+FFFD.
        assert_eq!(lossy_utf8_len(&[0xED, 0x95]), 3);
        // A lone continuation byte and a lone 0xFF: two replacements.
        assert_eq!(lossy_utf8_len(&[0x80, 0xFF]), 6);
        assert_eq!(lossy_utf8_len(&[b'a', 0xC3]), 4);
    }

    #[test]
    fn specials_count_zero() {
        let merges = crate::tokenizer::Merges::new(vec![(b'a' as u32, b'b' as u32)]);
        let e = BpeEncoder::from_merges(&merges).unwrap();
        let v = token_byte_lengths(&e);
        assert_eq!(v.len(), 257 + 9);
        assert_eq!(v[256], 2);
        assert_eq!(v[0x80], 3);
        assert!(v[257..].iter().all(|&x| x == 0));
    }
}
