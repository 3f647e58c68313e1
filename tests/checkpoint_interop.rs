//! Weights move both ways between nanochat and the reference: our checkpoint written as a `.pt`
//! state_dict loads in PyTorch with the reference's names, dtypes and values; a reference-style `.pt`
//! (torch.save of a compiled model's state_dict, bf16 embedding as on GPU) loads into our model.
use std::path::Path;
use std::process::Command;

use nanochat::checkpoint;
use nanochat::model::{Gpt, GptConfig};
use tch::{Device, Kind, Tensor};

fn python(script: &str, args: &[&Path]) -> String {
    let py = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python");
    let out = Command::new(py).arg("-c").arg(script).args(args).output().expect("the venv python (make setup)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn dense_model() -> Gpt {
    let model = Gpt::new(GptConfig::new(32, 300, 2, 2, 1, 128), Device::Cpu).unwrap();
    tch::no_grad(|| {
        for (i, (_, mut p)) in model.named_parameters().into_iter().enumerate() {
            let n = p.numel() as i64;
            p.copy_(
                &((Tensor::arange(n, (Kind::Float, Device::Cpu)) * 0.37 + i as f64).sin().view(p.size().as_slice())),
            );
        }
    });
    model
}

const CHECK_PT: &str = r#"
import sys, hashlib, torch
sd = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
for k in sorted(sd):
    t = sd[k]
    print(k, t.dtype, tuple(t.shape), hashlib.sha256(bytes(t.contiguous().view(torch.uint8).flatten().tolist())).hexdigest())
"#;

#[test]
fn our_checkpoint_loads_in_pytorch_with_the_reference_layout() {
    let dir = tempfile::tempdir().unwrap();
    let model = dense_model();
    let path = dir.path().join("model_000010.pt");
    checkpoint::write_pt(&path, &model.named_parameters()).unwrap();
    let listing = python(CHECK_PT, &[&path]);
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 2 + 2 * 6, "{listing}");
    for (name, t) in model.named_parameters() {
        let mut bytes = vec![0u8; t.numel() * 4];
        t.copy_data_u8(&mut bytes, t.numel());
        let sha = nanochat::speedrun::digest::sha256_bytes(&bytes);
        let shape: Vec<String> = t.size().iter().map(|d| d.to_string()).collect();
        let expected = format!("{name} torch.float32 ({}) {sha}", shape.join(", "));
        assert!(lines.contains(&expected.as_str()), "{expected} not in\n{listing}");
    }
    assert!(listing.contains("transformer.h.1.attn.c_k.weight torch.float32 (64, 128)"), "MQA: one KV head of 64");
}

#[test]
fn a_reference_style_pt_checkpoint_loads_into_our_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = dense_model();
    let ours = dir.path().join("ours.pt");
    checkpoint::write_pt(&ours, &model.named_parameters()).unwrap();
    // Re-save as the reference does on GPU: compiled-model keys, wte in bf16.
    let reference = dir.path().join("model_000010.pt");
    python(
        r#"
import sys, torch
sd = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
sd["transformer.wte.weight"] = sd["transformer.wte.weight"].bfloat16()
torch.save({"_orig_mod." + k: v for k, v in sd.items()}, sys.argv[2])
"#,
        &[&ours, &reference],
    );
    let weights = checkpoint::read_tensors(&reference).unwrap();
    assert_eq!(weights["transformer.wte.weight"].kind(), Kind::BFloat16);
    let loaded = Gpt::new(model.config, Device::Cpu).unwrap();
    checkpoint::load_weights(&loaded, &weights, &reference).unwrap();
    for ((name, a), (_, b)) in model.named_parameters().iter().zip(loaded.named_parameters()) {
        let expected = if name == "transformer.wte.weight" {
            a.to_kind(Kind::BFloat16).to_kind(Kind::Float)
        } else {
            a.shallow_clone()
        };
        assert!(expected.equal(&b), "{name}");
    }
}

#[test]
fn checkpoint_convert_round_trips_through_pt() {
    let dir = tempfile::tempdir().unwrap();
    let model = dense_model();
    let st = dir.path().join("model.safetensors");
    checkpoint::write_tensors(&st, &model.named_parameters()).unwrap();
    let pt = dir.path().join("model.pt");
    let back = dir.path().join("back.safetensors");
    for (from, to) in [(&st, &pt), (&pt, &back)] {
        let out = Command::new(env!("CARGO_BIN_EXE_nanochat"))
            .args(["checkpoint", "convert", from.to_str().unwrap(), to.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let original = checkpoint::read_tensors(&st).unwrap();
    let round = checkpoint::read_tensors(&back).unwrap();
    assert_eq!(original.len(), round.len());
    for (name, t) in &original {
        assert!(t.equal(&round[name]), "{name}");
    }
    let missing = Command::new(env!("CARGO_BIN_EXE_nanochat"))
        .args(["checkpoint", "convert", "/nonexistent.pt", "x.pt"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent.pt"));
}
