//! Property tests of the encoder on random Unicode: decode(encode(x)) == x, and ids equal a
//! naive tiktoken-rule encoder (fancy-regex split + byte-string rank lookups, NANOCHAT.md
//! §1.3 "Encoding") built from the same ranks.

mod common;

use std::collections::HashMap;
use std::sync::OnceLock;

use nanochat::tokenizer::split_pattern::{compile_split_regex, regex_chunks};
use nanochat::tokenizer::{BpeEncoder, BpeTrainer};
use proptest::prelude::*;

fn encoder() -> &'static BpeEncoder {
    static ENC: OnceLock<BpeEncoder> = OnceLock::new();
    ENC.get_or_init(|| {
        let mut docs = common::corpus_documents(300_000);
        // Extra runs so that tokens like "aaaa", "   " and "\n\n\n" exist.
        docs.push("aaaa aaa aa a aaaaaaa ".repeat(50) + &"    \n\n\n\t\t".repeat(20));
        let mut trainer = BpeTrainer::new(3_000).unwrap();
        trainer.count_documents(docs.iter().map(String::as_str)).unwrap();
        BpeEncoder::from_merges(&trainer.train(|_| {}).unwrap()).unwrap()
    })
}

/// tiktoken's rule, spelled out over byte strings.
fn naive_encode(enc: &BpeEncoder, text: &str) -> Vec<u32> {
    let ranks: HashMap<&[u8], u32> =
        enc.mergeable_tokens().iter().enumerate().map(|(i, t)| (t.as_slice(), i as u32)).collect();
    let re = compile_split_regex().unwrap();
    let mut out = Vec::new();
    for chunk in regex_chunks(&re, text).unwrap() {
        let b = chunk.as_bytes();
        if let Some(&r) = ranks.get(b) {
            out.push(r);
            continue;
        }
        let mut parts: Vec<&[u8]> = b.chunks(1).collect();
        loop {
            let mut best: Option<(u32, usize)> = None;
            for i in 0..parts.len().saturating_sub(1) {
                let joined = [parts[i], parts[i + 1]].concat();
                if let Some(&r) = ranks.get(joined.as_slice()) {
                    if best.is_none_or(|(br, _)| r < br) {
                        best = Some((r, i));
                    }
                }
            }
            let Some((_, i)) = best else { break };
            let start = parts[i].as_ptr() as usize - b.as_ptr() as usize;
            let len = parts[i].len() + parts[i + 1].len();
            parts[i] = &b[start..start + len];
            parts.remove(i + 1);
        }
        out.extend(parts.iter().map(|p| ranks[p]));
    }
    out
}

fn text_strategy() -> impl Strategy<Value = String> {
    let ch = prop_oneof![
        6 => prop::sample::select(
            "aaaa the of and \n\n\t  'sdef(self):0123456789,.!?한국中文ЖλΣ😀\r\u{a0}".chars().collect::<Vec<_>>()
        ),
        1 => any::<char>(),
    ];
    prop::collection::vec(ch, 0..200).prop_map(|v| v.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn round_trip(text in text_strategy()) {
        let enc = encoder();
        let ids = enc.encode_ordinary(&text);
        prop_assert_eq!(enc.decode(&ids).unwrap(), text.as_bytes());
        prop_assert_eq!(enc.decode_lossy(&ids).unwrap(), text);
    }

    #[test]
    fn same_ids_as_naive_tiktoken_rule(text in text_strategy()) {
        let enc = encoder();
        prop_assert_eq!(enc.encode_ordinary(&text), naive_encode(enc, &text));
    }
}

#[test]
fn long_chunks_use_the_same_rule() {
    // Chunks of >= 128 bytes take the heap path in the encoder.
    let enc = encoder();
    for text in [
        "a".repeat(1000),
        " ".repeat(777) + "x",
        "\n".repeat(300),
        "abcdefghij".repeat(40),
        "한국어".repeat(100),
        "!?".repeat(200),
    ] {
        assert_eq!(enc.encode_ordinary(&text), naive_encode(enc, &text), "{text:?}");
    }
}
