//! The hand-written splitter must yield exactly fancy-regex's `find_iter` chunks for
//! SPLIT_PATTERN (NANOCHAT.md §1.1): on text of several scripts and on random Unicode.

mod common;

use nanochat::tokenizer::split_chunks;
use nanochat::tokenizer::split_pattern::{compile_split_regex, regex_chunks};
use proptest::prelude::*;

fn assert_same_chunks(text: &str) {
    let re = compile_split_regex().unwrap();
    let expected = regex_chunks(&re, text).unwrap();
    let got: Vec<&str> = split_chunks(text).collect();
    if got != expected {
        let first = got.iter().zip(&expected).position(|(a, b)| a != b);
        panic!(
            "chunks differ at {first:?}: ours {:?} regex {:?} (text {:?})",
            first.map(|i| &got[i.saturating_sub(2)..(i + 3).min(got.len())]),
            first.map(|i| &expected[i.saturating_sub(2)..(i + 3).min(expected.len())]),
            &text[..text.len().min(200)]
        );
    }
}

#[test]
fn multilingual_sample_matches_regex() {
    assert_same_chunks(&common::multilingual_text());
}

#[test]
fn python_sources_match_regex() {
    // A few hundred KB of real code and prose shipped with Python.
    let text = common::python_stdlib_text(400_000);
    assert!(text.len() > 100_000, "too little stdlib text found");
    assert_same_chunks(&text);
}

#[test]
fn edge_cases_match_regex() {
    for t in [
        "",
        " ",
        "\n",
        "   ",
        "a  ",
        "  a",
        "'s",
        "'S'LL'll've'RE'Ve'ſ'K",
        "don't I'm we'd they'VE",
        "1234567",
        "x²³⁴ ½ Ⅻ",
        "\r\n\r\n  \r\n\tx",
        " \u{a0}\u{2028}\u{3000}x",
        "!!!\n\n\r?",
        " !!! ",
        "e\u{301}e\u{301}",
        "😀😀 😀a",
        "\u{85}\u{85}x\u{85}",
        "\u{180e}x",
        "a\u{200b}b",
    ] {
        assert_same_chunks(t);
    }
}

/// Characters that exercise every branch: classes, CR/LF, apostrophes, case folds, marks.
fn interesting_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => prop::sample::select(vec![
            ' ', ' ', '\n', '\r', '\t', '\'', 's', 'S', 'l', 'L', 'v', 'e', 'E', 'r', 'd', 'm',
            't', 'ſ', 'K', 'a', '1', '9', '²', '.', '!', '-', '_', '\u{a0}', '\u{3000}',
            '\u{2028}', '\u{85}', '\u{b}', '\u{c}', '\u{301}', '한', '中', 'Ж', 'λ', '😀', '\0',
        ]),
        1 => any::<char>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_text_matches_regex(chars in prop::collection::vec(interesting_char(), 0..40)) {
        let text: String = chars.into_iter().collect();
        let re = compile_split_regex().unwrap();
        let expected = regex_chunks(&re, &text).unwrap();
        let got: Vec<&str> = split_chunks(&text).collect();
        prop_assert_eq!(got, expected);
    }
}
