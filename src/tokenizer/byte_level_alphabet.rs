//! GPT-2's reversible byte-to-unicode mapping used by HuggingFace byte-level BPE
//! (`tokenizer.json`, NANOCHAT.md §1.5 / DESIGN.md "Tokenizer"): printable Latin-1 bytes map
//! to themselves, the other 68 bytes to U+0100.. in byte order, so every token is a string
//! without spaces or control characters.

/// The character byte `b` is written as.
pub fn byte_to_char(b: u8) -> char {
    BYTE_TO_CHAR.with(|t| t[b as usize])
}

/// A byte string in the byte-level alphabet.
pub fn bytes_to_string(bytes: &[u8]) -> String {
    BYTE_TO_CHAR.with(|t| bytes.iter().map(|&b| t[b as usize]).collect())
}

/// Inverse of [`bytes_to_string`]; `None` if a character is not in the alphabet.
pub fn string_to_bytes(s: &str) -> Option<Vec<u8>> {
    s.chars().map(char_to_byte).collect()
}

/// The byte a character of the alphabet stands for.
pub fn char_to_byte(c: char) -> Option<u8> {
    let cp = c as u32;
    if is_self_mapped(cp) {
        return Some(cp as u8);
    }
    let k = cp.checked_sub(256)?;
    (0u32..256).filter(|&b| !is_self_mapped(b)).nth(k as usize).map(|b| b as u8)
}

fn is_self_mapped(b: u32) -> bool {
    (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b)
}

fn build_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut shifted = 0u32;
    for b in 0..256u32 {
        let cp = if is_self_mapped(b) {
            b
        } else {
            shifted += 1;
            255 + shifted
        };
        table[b as usize] = char::from_u32(cp).unwrap_or('\u{FFFD}');
    }
    table
}

thread_local! {
    static BYTE_TO_CHAR: [char; 256] = build_table();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_and_round_trip() {
        assert_eq!(byte_to_char(b' '), 'Ġ');
        assert_eq!(byte_to_char(b'\n'), 'Ċ');
        assert_eq!(byte_to_char(b'a'), 'a');
        assert_eq!(byte_to_char(0), 'Ā');
        assert_eq!(byte_to_char(0xAD), 'Ń');
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(string_to_bytes(&bytes_to_string(&all)).unwrap(), all);
        assert_eq!(char_to_byte('€'), None);
    }
}
