// Shared helpers for the integration tests: locating the Python interpreter with torch
// (env NANOCHAT_PYTHON, default .venv/bin/python), running the helper scripts in
// tests/torch_pt, and the expected-values sidecar format those scripts share with Rust
// (name TAB dtype TAB shape TAB hex-bytes per line).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use tch::{Kind, Tensor};

/// The project venv (make setup) has torch.
pub const DEFAULT_PYTHON: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python");

pub fn python() -> String {
    std::env::var("NANOCHAT_PYTHON").unwrap_or_else(|_| DEFAULT_PYTHON.to_string())
}

pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("torch_pt").join(name)
}

/// Runs a helper script; panics with its output if it fails or the interpreter is missing.
pub fn run_python(script_name: &str, args: &[&Path]) -> String {
    let py = python();
    let output = Command::new(&py)
        .arg(script(script_name))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {py} (set NANOCHAT_PYTHON to a python with torch): {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{script_name} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}", output.status);
    stdout
}

/// The kinds `.pt` files hold, by torch dtype name.
pub const KINDS: [(&str, Kind); 8] = [
    ("float32", Kind::Float),
    ("bfloat16", Kind::BFloat16),
    ("float16", Kind::Half),
    ("float64", Kind::Double),
    ("int64", Kind::Int64),
    ("int32", Kind::Int),
    ("uint8", Kind::Uint8),
    ("bool", Kind::Bool),
];

pub fn torch_name(kind: Kind) -> &'static str {
    KINDS.iter().find(|(_, k)| *k == kind).unwrap_or_else(|| panic!("no dtype name for {kind:?}")).0
}

/// One tensor as contiguous row-major little-endian bytes: what sidecars hold and tests compare.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTensor {
    pub name: String,
    pub kind: Kind,
    pub shape: Vec<i64>,
    pub data: Vec<u8>,
}

impl RawTensor {
    pub fn new(name: &str, kind: Kind, shape: &[i64], data: Vec<u8>) -> Self {
        RawTensor { name: name.to_string(), kind, shape: shape.to_vec(), data }
    }

    /// The bytes of `t` in row-major order (a view is read through its strides).
    pub fn of(name: &str, t: &Tensor) -> Self {
        let t = t.detach().contiguous();
        let numel = t.numel();
        let mut data = vec![0u8; numel * t.kind().elt_size_in_bytes()];
        t.copy_data_u8(&mut data, numel);
        RawTensor { name: name.to_string(), kind: t.kind(), shape: t.size(), data }
    }

    pub fn tensor(&self) -> Tensor {
        Tensor::f_from_data_size(&self.data, &self.shape, self.kind).unwrap()
    }
}

pub fn tensors(raw: &[RawTensor]) -> Vec<(String, Tensor)> {
    raw.iter().map(|r| (r.name.clone(), r.tensor())).collect()
}

/// Reads a `.pt` with nanochat's reader; every tensor must come back contiguous on the CPU.
pub fn read_raw(path: &Path) -> Vec<RawTensor> {
    let read = nanochat::checkpoint::torch_pt::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for (name, t) in &read {
        assert!(t.is_contiguous() && t.device() == tch::Device::Cpu, "{name}");
    }
    read.iter().map(|(name, t)| RawTensor::of(name, t)).collect()
}

pub fn write_expected(path: &Path, tensors: &[RawTensor]) {
    let mut text = String::new();
    for t in tensors {
        let shape: Vec<String> = t.shape.iter().map(|d| d.to_string()).collect();
        let hex: String = t.data.iter().map(|b| format!("{b:02x}")).collect();
        text.push_str(&format!("{}\t{}\t{}\t{}\n", t.name, torch_name(t.kind), shape.join(","), hex));
    }
    std::fs::write(path, text).unwrap();
}

pub fn read_expected(path: &Path) -> Vec<RawTensor> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            assert_eq!(fields.len(), 4, "bad sidecar line {line:?}");
            let kind = KINDS.iter().find(|(n, _)| *n == fields[1]).unwrap_or_else(|| panic!("dtype {}", fields[1])).1;
            let shape = if fields[2].is_empty() {
                Vec::new()
            } else {
                fields[2].split(',').map(|d| d.parse().unwrap()).collect()
            };
            let hex = fields[3].as_bytes();
            let data =
                hex.chunks(2).map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap()).collect();
            RawTensor { name: fields[0].to_string(), kind, shape, data }
        })
        .collect()
}

/// Asserts two tensor lists are identical, with a readable message on the first difference.
pub fn assert_same(got: &[RawTensor], want: &[RawTensor], what: &str) {
    let got_names: Vec<&str> = got.iter().map(|t| t.name.as_str()).collect();
    let want_names: Vec<&str> = want.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(got_names, want_names, "{what}: names/order");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.kind, w.kind, "{what}: dtype of {}", w.name);
        assert_eq!(g.shape, w.shape, "{what}: shape of {}", w.name);
        assert!(g.data == w.data, "{what}: bytes of {} differ ({} vs {} bytes)", w.name, g.data.len(), w.data.len());
    }
}

/// Deterministic pseudo-random bytes (xorshift), so tests need no rand crate.
pub fn pseudo_random_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
