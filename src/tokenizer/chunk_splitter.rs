//! Hand-written matcher for the nanochat split pattern (NANOCHAT.md §1.1). It yields exactly
//! the chunks that fancy-regex's `find_iter` yields for `SPLIT_PATTERN` (tested against it on
//! real text and random Unicode), several times faster. The alternatives, tried in order:
//!
//! 1. `'(?i:[sdmt]|ll|ve|re)`            contractions (case-insensitive; `ſ` folds to `s`)
//! 2. `[^\r\n\p{L}\p{N}]?+\p{L}+`         letters with at most one leading non-letter/number
//! 3. `\p{N}{1,2}`                        one or two numbers
//! 4. ` ?[^\s\p{L}\p{N}]++[\r\n]*`        punctuation run, optional leading space, trailing newlines
//! 5. `\s*[\r\n]`                         white space up to its last CR/LF
//! 6. `\s+(?!\S)`                         white space except the one before a non-space
//! 7. `\s+`                               any white space

use super::char_class::{CharClass, CharClassTable};

/// Iterator over the chunks of a text.
pub struct ChunkSplitter<'t> {
    text: &'t str,
    pos: usize,
    table: &'static CharClassTable,
}

impl<'t> ChunkSplitter<'t> {
    pub fn new(text: &'t str) -> Self {
        ChunkSplitter { text, pos: 0, table: CharClassTable::get() }
    }
}

impl<'t> Iterator for ChunkSplitter<'t> {
    type Item = &'t str;

    #[inline]
    fn next(&mut self) -> Option<&'t str> {
        if self.pos >= self.text.len() {
            return None;
        }
        let start = self.pos;
        let end = chunk_end(self.table, self.text.as_bytes(), start);
        self.pos = end;
        // `chunk_end` only stops on character boundaries.
        self.text.get(start..end)
    }
}

/// Splits `text` into its chunks.
pub fn split_chunks(text: &str) -> ChunkSplitter<'_> {
    ChunkSplitter::new(text)
}

/// Decodes the character starting at `i` of valid UTF-8: (code point, length in bytes).
#[inline(always)]
fn decode_at(b: &[u8], i: usize) -> (u32, usize) {
    let b0 = b[i];
    if b0 < 0x80 {
        (b0 as u32, 1)
    } else if b0 < 0xE0 {
        ((((b0 & 0x1F) as u32) << 6) | (b[i + 1] & 0x3F) as u32, 2)
    } else if b0 < 0xF0 {
        ((((b0 & 0x0F) as u32) << 12) | (((b[i + 1] & 0x3F) as u32) << 6) | (b[i + 2] & 0x3F) as u32, 3)
    } else {
        (
            (((b0 & 0x07) as u32) << 18)
                | (((b[i + 1] & 0x3F) as u32) << 12)
                | (((b[i + 2] & 0x3F) as u32) << 6)
                | (b[i + 3] & 0x3F) as u32,
            4,
        )
    }
}

/// (class, code point, byte length) of the character at `i`.
#[inline(always)]
fn class_at(t: &CharClassTable, b: &[u8], i: usize) -> (CharClass, u32, usize) {
    let b0 = b[i];
    if b0 < 0x80 {
        return (t.ascii(b0), b0 as u32, 1);
    }
    let (cp, len) = decode_at(b, i);
    (t.of(cp), cp, len)
}

const CR: u32 = '\r' as u32;
const LF: u32 = '\n' as u32;

/// End (exclusive byte offset) of the chunk that starts at `start < b.len()`.
#[inline]
fn chunk_end(t: &CharClassTable, b: &[u8], start: usize) -> usize {
    let n = b.len();
    let (c0, cp0, l0) = class_at(t, b, start);
    let p1 = start + l0;
    match c0 {
        CharClass::Letter => run_end(t, b, p1, CharClass::Letter),
        CharClass::Number => {
            if p1 < n {
                let (c1, _, l1) = class_at(t, b, p1);
                if c1 == CharClass::Number {
                    return p1 + l1;
                }
            }
            p1
        }
        CharClass::Other => {
            if cp0 == '\'' as u32 {
                if let Some(end) = contraction_end(b, p1) {
                    return end;
                }
            }
            if p1 < n {
                let (c1, _, l1) = class_at(t, b, p1);
                if c1 == CharClass::Letter {
                    return run_end(t, b, p1 + l1, CharClass::Letter);
                }
            }
            punctuation_end(t, b, p1)
        }
        CharClass::Space => {
            if cp0 != CR && cp0 != LF && p1 < n {
                let (c1, _, l1) = class_at(t, b, p1);
                if c1 == CharClass::Letter {
                    return run_end(t, b, p1 + l1, CharClass::Letter);
                }
                if cp0 == ' ' as u32 && c1 == CharClass::Other {
                    return punctuation_end(t, b, p1 + l1);
                }
            }
            whitespace_end(t, b, start)
        }
    }
}

/// First offset at or after `p` whose character is not of class `class`.
#[inline(always)]
fn run_end(t: &CharClassTable, b: &[u8], mut p: usize, class: CharClass) -> usize {
    let n = b.len();
    while p < n {
        let (c, _, l) = class_at(t, b, p);
        if c != class {
            break;
        }
        p += l;
    }
    p
}

/// Alternative 4 after its first punctuation character: more punctuation, then `[\r\n]*`.
#[inline(always)]
fn punctuation_end(t: &CharClassTable, b: &[u8], p: usize) -> usize {
    let mut p = run_end(t, b, p, CharClass::Other);
    while p < b.len() && (b[p] == b'\r' || b[p] == b'\n') {
        p += 1;
    }
    p
}

/// Alternatives 5, 6 and 7 for a chunk starting with white space.
#[inline(always)]
fn whitespace_end(t: &CharClassTable, b: &[u8], start: usize) -> usize {
    let n = b.len();
    let mut p = start;
    let mut last_newline_end = None;
    let mut last_char_start = start;
    let mut chars = 0usize;
    while p < n {
        let (c, cp, l) = class_at(t, b, p);
        if c != CharClass::Space {
            break;
        }
        if cp == CR || cp == LF {
            last_newline_end = Some(p + l);
        }
        last_char_start = p;
        p += l;
        chars += 1;
    }
    if let Some(end) = last_newline_end {
        return end; // 5: \s*[\r\n]
    }
    if p == n || chars == 1 {
        return p; // 6 at end of text, or 7 for a single space before a non-space
    }
    last_char_start // 6: leave the last space to prefix the next chunk
}

/// Alternative 1 after the apostrophe at `p - 1`: `[sdmt]|ll|ve|re`, case-insensitively.
/// Under Unicode simple case folding the only non-ASCII member is `ſ` (U+017F) for `s`.
#[inline(always)]
fn contraction_end(b: &[u8], p: usize) -> Option<usize> {
    let c1 = *b.get(p)?;
    match c1.to_ascii_lowercase() {
        b's' | b'd' | b'm' | b't' => return Some(p + 1),
        b'l' | b'v' | b'r' => {
            let want = if c1.eq_ignore_ascii_case(&b'l') { b'l' } else { b'e' };
            if b.get(p + 1).is_some_and(|c2| c2.to_ascii_lowercase() == want) {
                return Some(p + 2);
            }
        }
        _ => {}
    }
    if c1 == 0xC5 && b.get(p + 1) == Some(&0xBF) {
        return Some(p + 2); // ſ
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> Vec<&str> {
        split_chunks(s).collect()
    }

    #[test]
    fn english_sentence() {
        assert_eq!(
            split("Hello world, it's 2025!\n\n  Done   now"),
            vec!["Hello", " world", ",", " it", "'s", " ", "20", "25", "!\n\n", " ", " Done", "  ", " now"]
        );
    }

    #[test]
    fn contractions_and_long_s() {
        assert_eq!(split("I'LL we'Ve 'ſ 'x"), vec!["I", "'LL", " we", "'Ve", " '", "ſ", " '", "x"]);
        assert_eq!(split("'ſ"), vec!["'ſ"]);
    }

    #[test]
    fn trailing_whitespace_and_newlines() {
        assert_eq!(split("a  \n\t b   "), vec!["a", "  \n", "\t", " b", "   "]);
        assert_eq!(split("x\r\n\r\ny"), vec!["x", "\r\n\r\n", "y"]);
    }
}
