//! Reads the Python locks under manifests/python/ (written by relock.py): one pin per requirement, `name==version`
//! with an optional `; marker`, followed by `--hash=sha256:HEX` entries (one per wheel), joined with `\`.
#![allow(dead_code)] // shared by several test binaries, each using part of it
use std::collections::BTreeMap;
use std::path::Path;

pub struct Pin {
    pub version: String,
    pub sha256: Vec<String>,
}

/// PEP 503 name normalisation: lower case, runs of `-`, `_`, `.` become one `-`.
pub fn normalize(name: &str) -> String {
    let mut out = String::new();
    for c in name.to_ascii_lowercase().chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// manifests/python/<file>'s pins by normalised name; panics on a line that is not a hashed `name==version`.
pub fn read_lock(file: &str) -> BTreeMap<String, Pin> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/python").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut pins = BTreeMap::new();
    for line in text.replace("\\\n", " ").lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let mut words = line.split_whitespace();
        let spec = words.next().unwrap_or_default();
        let (name, version) = spec.split_once("==").unwrap_or_else(|| panic!("{file} line {line:?}"));
        let sha256: Vec<String> = words.filter_map(|w| w.strip_prefix("--hash=sha256:")).map(str::to_string).collect();
        assert!(!sha256.is_empty(), "{file}: {spec} has no --hash=sha256");
        for hash in &sha256 {
            let hex = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            assert!(hex, "{file} {spec}: hash {hash:?} is not 64 lower-case hex");
        }
        let pin = Pin { version: version.to_string(), sha256 };
        assert!(pins.insert(normalize(name), pin).is_none(), "{name} twice in {file}");
    }
    assert!(pins.len() > 10, "{file} parsed to only {} pins", pins.len());
    pins
}
