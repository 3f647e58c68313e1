//! The tokenizer-training text stream of `scripts/tok_train.py` (NANOCHAT.md §1.4): every
//! document is cut to its first `doc_cap` characters (code points), the running character
//! count grows by the cut length, the document is yielded, and only then is
//! `count > max_chars` checked — the document that crosses the budget is still included.

/// NANOCHAT.md §1.4 `--doc_cap` default.
pub const DEFAULT_DOC_CAP: usize = 10_000;
/// NANOCHAT.md §1.4: the speedrun passes `--max_chars=2000000000`.
pub const SPEEDRUN_MAX_CHARS: u64 = 2_000_000_000;

/// Iterator adapter applying the doc_cap / max_chars rule.
pub struct CappedDocuments<I> {
    inner: I,
    doc_cap: usize,
    max_chars: u64,
    chars: u64,
    done: bool,
}

impl<I> CappedDocuments<I> {
    pub fn new(inner: I, doc_cap: usize, max_chars: u64) -> Self {
        CappedDocuments { inner, doc_cap, max_chars, chars: 0, done: false }
    }

    /// Characters yielded so far.
    pub fn chars(&self) -> u64 {
        self.chars
    }
}

/// `doc` cut to its first `cap` characters, and its length in characters.
pub fn truncate_chars(mut doc: String, cap: usize) -> (String, usize) {
    match doc.char_indices().nth(cap) {
        Some((byte_end, _)) => {
            doc.truncate(byte_end);
            (doc, cap)
        }
        None => {
            let n = doc.chars().count();
            (doc, n)
        }
    }
}

impl<I: Iterator<Item = String>> Iterator for CappedDocuments<I> {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        if self.done {
            return None;
        }
        let Some(doc) = self.inner.next() else {
            self.done = true;
            return None;
        };
        let (doc, n) = truncate_chars(doc, self.doc_cap);
        self.chars += n as u64;
        // Checked after counting, as in the reference: this document is still yielded.
        if self.chars > self.max_chars {
            self.done = true;
        }
        Some(doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_documents_by_code_points() {
        let (s, n) = truncate_chars("héllo wörld".to_string(), 4);
        assert_eq!((s.as_str(), n), ("héll", 4));
        let (s, n) = truncate_chars("한국어".to_string(), 10);
        assert_eq!((s.as_str(), n), ("한국어", 3));
    }

    #[test]
    fn crossing_document_is_included() {
        let docs = ["aaaa", "bbbb", "cccc", "dddd"].map(String::from);
        // 4 + 4 = 8 > 7 after the second document: it is yielded, then we stop.
        let got: Vec<String> = CappedDocuments::new(docs.clone().into_iter(), 100, 7).collect();
        assert_eq!(got, vec!["aaaa", "bbbb"]);
        // Exactly reaching the budget does not stop (strict `>`).
        let got: Vec<String> = CappedDocuments::new(docs.clone().into_iter(), 100, 8).collect();
        assert_eq!(got.len(), 3);
        // Cropped length counts: each doc contributes 2 chars.
        let got: Vec<String> = CappedDocuments::new(docs.into_iter(), 2, 5).collect();
        assert_eq!(got, vec!["aa", "bb", "cc"]);
    }
}
