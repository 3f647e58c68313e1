//! Shared helpers of the integration tests: real text found on a Debian + Python system, the
//! Python oracle (rustbpe, tiktoken, tokenizers in a venv), JSONL corpus files.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The hand-written multilingual sample (Korean, Chinese, Russian, Greek, Japanese, Arabic,
/// Hindi, French, code, emoji, CRLF...).
pub fn multilingual_text() -> String {
    include_str!("../data/multilingual.txt").to_string()
}

/// Python interpreter with rustbpe, tiktoken and tokenizers installed: `$NANOCHAT_PYTHON`,
/// else `.venv/bin/python` or `../venv/bin/python` next to the crate.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("NANOCHAT_PYTHON") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for candidate in [root.join(".venv/bin/python")] {
        if candidate.exists() {
            return candidate;
        }
    }
    PathBuf::from("python3")
}

/// Runs `tests/oracle/<script>` with the oracle Python; returns stdout, panics with stderr.
pub fn run_oracle(script: &str, args: &[&str]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle").join(script);
    let py = python();
    let out = Command::new(&py)
        .arg(&path)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} (set NANOCHAT_PYTHON): {e}", py.display()));
    if !out.status.success() {
        panic!("{script} failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Python standard library directory (from the oracle Python, else /usr/lib/python3.*).
pub fn python_stdlib_dir() -> PathBuf {
    let asked =
        Command::new(python()).args(["-c", "import sysconfig; print(sysconfig.get_paths()['stdlib'])"]).output();
    if let Ok(out) = asked {
        let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && p.is_dir() {
            return p;
        }
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib")
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    dirs.retain(|p| {
        p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("python3.") && p.join("os.py").exists())
    });
    dirs.sort();
    dirs.pop().expect("no Python standard library found")
}

fn collect_files(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            if !p.file_name().is_some_and(|n| n == "site-packages" || n == "__pycache__") {
                collect_files(&p, ext, out);
            }
        } else if p.extension().is_some_and(|e| e == ext) {
            out.push(p);
        }
    }
}

/// Documents of real text, in a fixed order, up to about `max_bytes`: the multilingual
/// sample, the license texts of /usr/share/common-licenses, then Python stdlib sources.
pub fn corpus_documents(max_bytes: usize) -> Vec<String> {
    let mut docs = vec![multilingual_text()];
    let mut total = docs[0].len();
    let mut files = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/usr/share/common-licenses") {
        let mut lic: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        lic.sort();
        files.extend(lic.into_iter().filter(|p| p.is_file()));
    }
    collect_files(&python_stdlib_dir(), "py", &mut files);
    for f in files {
        if total >= max_bytes {
            break;
        }
        if let Ok(text) = std::fs::read_to_string(&f) {
            total += text.len();
            docs.push(text);
        }
    }
    docs
}

/// Concatenated stdlib sources, about `max_bytes`.
pub fn python_stdlib_text(max_bytes: usize) -> String {
    let mut files = Vec::new();
    collect_files(&python_stdlib_dir(), "py", &mut files);
    let mut text = String::new();
    for f in files {
        if text.len() >= max_bytes {
            break;
        }
        if let Ok(t) = std::fs::read_to_string(&f) {
            text.push_str(&t);
        }
    }
    text
}

/// Writes documents as JSON lines (one JSON string per line).
pub fn write_jsonl(path: &Path, docs: &[String]) {
    let mut out = String::new();
    for d in docs {
        out.push_str(&serde_json::to_string(d).unwrap());
        out.push('\n');
    }
    std::fs::write(path, out).unwrap();
}

/// A fresh temporary directory under the target dir.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
