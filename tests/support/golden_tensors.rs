//! A golden safetensors file written by one of tests/golden/make_*_golden.py: tensors by name, and
//! JSON values in the header's `__metadata__` (each stored as a JSON string); and the comparisons the
//! tests that read them share.
#![allow(dead_code)]
use std::collections::BTreeMap;
use std::path::Path;

use nanochat::model::Gpt;
use tch::{Kind, Tensor};

pub struct GoldenTensors {
    tensors: BTreeMap<String, Tensor>,
    meta: serde_json::Map<String, serde_json::Value>,
}

impl GoldenTensors {
    /// `file` under tests/golden/.
    pub fn load(file: &str) -> Self {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(file);
        let bytes = std::fs::read(&path).expect("golden file is committed");
        let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + len]).unwrap();
        let meta = header["__metadata__"].as_object().unwrap().clone();
        let tensors = Tensor::read_safetensors(&path).unwrap().into_iter().collect();
        GoldenTensors { tensors, meta }
    }

    pub fn get(&self, name: &str) -> &Tensor {
        self.tensors.get(name).unwrap_or_else(|| panic!("golden tensor {name}"))
    }

    /// The metadata entry `key`, parsed.
    pub fn meta_json(&self, key: &str) -> serde_json::Value {
        serde_json::from_str(self.meta[key].as_str().unwrap()).unwrap()
    }

    /// Whether this machine's CPU is the one the golden recorded in its `cpu` metadata (see
    /// tests/golden/safetensors_writer.py `cpu_model`): libtorch's vectorized kernels round differently
    /// on other instruction sets, so bit-for-bit claims hold on that CPU model only.
    pub fn made_on_this_cpu(&self) -> bool {
        let model = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|info| {
            let line = info.lines().find(|l| l.starts_with("model name"))?;
            Some(line.split_once(':')?.1.trim().to_string())
        });
        model.is_some() && self.meta.get("cpu").and_then(|c| c.as_str()) == model.as_deref()
    }

    /// Copies the golden tensors `<prefix><parameter name>` into `model`'s parameters.
    pub fn load_into(&self, model: &Gpt, prefix: &str) {
        tch::no_grad(|| {
            for (name, mut var) in model.named_parameters() {
                var.copy_(self.get(&format!("{prefix}{name}")));
            }
        });
    }
}

/// The sha256 of a tensor's values as fp32, as the golden scripts hash them.
pub fn tensor_sha256(t: &Tensor) -> String {
    let t = t.contiguous().to_kind(Kind::Float);
    let mut bytes = vec![0u8; t.numel() * 4];
    t.flatten(0, -1).view_dtype(Kind::Uint8).copy_data_u8(&mut bytes, t.numel() * 4);
    nanochat::speedrun::digest::sha256_bytes(&bytes)
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}
