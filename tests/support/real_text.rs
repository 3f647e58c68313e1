//! Real text for tests that need documents: the Python sources of the torch package that
//! `make setup` installs into the project venv, in a fixed order.
use std::path::{Path, PathBuf};

fn python_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            python_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "py") {
            out.push(p);
        }
    }
}

/// The first `n` torch sources longer than 200 bytes (nn, _refs, distributed), sorted by path.
pub fn torch_sources(n: usize) -> Vec<String> {
    // .venv/lib/python3.X/site-packages/torch, X the minor version of the Python that made the venv.
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/lib");
    let torch = std::fs::read_dir(&lib)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("site-packages/torch"))
        .find(|torch| torch.is_dir())
        .unwrap_or_else(|| panic!("no torch under {}/python3.*/site-packages: run `make setup`", lib.display()));
    let mut files = Vec::new();
    for sub in ["nn", "_refs", "distributed"] {
        python_files(&torch.join(sub), &mut files);
    }
    files.sort();
    let docs: Vec<String> =
        files.iter().filter_map(|f| std::fs::read_to_string(f).ok()).filter(|d| d.len() > 200).take(n).collect();
    assert_eq!(docs.len(), n, "torch sources in the venv (make setup)");
    docs
}
