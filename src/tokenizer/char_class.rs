//! Unicode character classes of the split pattern (NANOCHAT.md §1.1): `\p{L}` (letter),
//! `\p{N}` (number) and `\s` (white space), taken from `regex-syntax` — the same tables that
//! fancy-regex uses — and packed into a two-level lookup table for the hand-written splitter.

use std::sync::OnceLock;

use regex_syntax::hir::{Class, HirKind};

/// The class of one character as far as the split pattern cares. The three named classes
/// are disjoint in Unicode (checked when the table is built).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum CharClass {
    /// None of the others (punctuation, symbols, marks, controls that are not white space).
    Other = 0,
    /// `\p{L}`
    Letter = 1,
    /// `\p{N}`
    Number = 2,
    /// `\s` (Unicode White_Space)
    Space = 3,
}

const BLOCK_BITS: u32 = 8;
const BLOCK_SIZE: usize = 1 << BLOCK_BITS;
const NUM_CODE_POINTS: usize = 0x11_0000;

/// Two-level table: block index per 256 code points, then deduplicated blocks.
pub struct CharClassTable {
    ascii: [CharClass; 128],
    block_of: Vec<u16>,
    blocks: Vec<CharClass>,
}

impl CharClassTable {
    /// The process-wide table (built once, about a millisecond).
    pub fn get() -> &'static CharClassTable {
        static TABLE: OnceLock<CharClassTable> = OnceLock::new();
        TABLE.get_or_init(CharClassTable::build)
    }

    fn build() -> CharClassTable {
        let mut flat = vec![CharClass::Other; NUM_CODE_POINTS];
        for (pattern, class) in
            [(r"\p{L}", CharClass::Letter), (r"\p{N}", CharClass::Number), (r"\s", CharClass::Space)]
        {
            for (start, end) in unicode_class_ranges(pattern) {
                for cp in start..=end {
                    // Disjointness of L, N and White_Space is a Unicode invariant; a table
                    // that broke it would make the splitter wrong, so fail loudly in tests.
                    debug_assert_eq!(flat[cp as usize], CharClass::Other, "U+{cp:04X}");
                    flat[cp as usize] = class;
                }
            }
        }
        let mut ascii = [CharClass::Other; 128];
        ascii.copy_from_slice(&flat[..128]);
        let mut block_of = Vec::with_capacity(NUM_CODE_POINTS / BLOCK_SIZE);
        let mut blocks: Vec<CharClass> = Vec::new();
        let mut seen: std::collections::HashMap<&[CharClass], u16> = Default::default();
        for chunk in flat.chunks(BLOCK_SIZE) {
            let next = seen.len() as u16;
            let id = *seen.entry(chunk).or_insert_with(|| {
                blocks.extend_from_slice(chunk);
                next
            });
            block_of.push(id);
        }
        CharClassTable { ascii, block_of, blocks }
    }

    /// Class of an ASCII byte (`b < 128`).
    #[inline(always)]
    pub fn ascii(&self, b: u8) -> CharClass {
        self.ascii[(b & 0x7f) as usize]
    }

    /// Class of any code point.
    #[inline(always)]
    pub fn of(&self, cp: u32) -> CharClass {
        if cp < 128 {
            return self.ascii[cp as usize];
        }
        let block = match self.block_of.get((cp >> BLOCK_BITS) as usize) {
            Some(&b) => b as usize,
            None => return CharClass::Other,
        };
        self.blocks[(block << BLOCK_BITS) | (cp as usize & (BLOCK_SIZE - 1))]
    }
}

/// Code point ranges of a single-class regex such as `\p{L}`, as regex-syntax defines them.
fn unicode_class_ranges(pattern: &str) -> Vec<(u32, u32)> {
    let hir = regex_syntax::ParserBuilder::new().build().parse(pattern).ok();
    match hir.as_ref().map(|h| h.kind()) {
        Some(HirKind::Class(Class::Unicode(class))) => {
            class.ranges().iter().map(|r| (r.start() as u32, r.end() as u32)).collect()
        }
        // The three patterns above are constants that regex-syntax always accepts.
        _ => unreachable!("{pattern} is a Unicode class"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_of_sample_characters() {
        let t = CharClassTable::get();
        assert_eq!(t.of('a' as u32), CharClass::Letter);
        assert_eq!(t.of('한' as u32), CharClass::Letter);
        assert_eq!(t.of('Ω' as u32), CharClass::Letter);
        assert_eq!(t.of('7' as u32), CharClass::Number);
        assert_eq!(t.of('²' as u32), CharClass::Number);
        assert_eq!(t.of('五' as u32), CharClass::Letter);
        assert_eq!(t.of('Ⅷ' as u32), CharClass::Number);
        assert_eq!(t.of(' ' as u32), CharClass::Space);
        assert_eq!(t.of(0xA0), CharClass::Space);
        assert_eq!(t.of(0x3000), CharClass::Space);
        assert_eq!(t.of(0x2028), CharClass::Space);
        assert_eq!(t.of('\'' as u32), CharClass::Other);
        assert_eq!(t.of(0x0301), CharClass::Other); // combining acute accent (Mn)
        assert_eq!(t.of(0x1F600), CharClass::Other); // emoji
        assert_eq!(t.of(0x10FFFF), CharClass::Other);
    }
}
