// Interop with real PyTorch: Rust reads files torch.save wrote (fixtures made by
// tests/torch_pt/make_fixtures.py, compared with the sidecar values torch dumped), and torch.load
// (weights_only=True, also mmap=True) reads files Rust wrote (tests/torch_pt/check_written.py).
// Needs a Python with torch 2.x: env NANOCHAT_PYTHON, default .venv/bin/python.

#[path = "torch_pt/support.rs"]
mod common;

use std::path::Path;

use common::{assert_same, pseudo_random_bytes, read_expected, run_python, write_expected};
use nanochat::torch_pickle::{read_state_dict, write_state_dict, DType, RawTensor};

#[test]
fn reads_torch_saved_fixtures() {
    let dir = tempfile::tempdir().unwrap();
    run_python("make_fixtures.py", &[dir.path()]);
    let fixtures = ["mixed", "model_000100", "model_bf16", "orig_mod", "many", "params", "from_buffer", "unaligned"];
    for name in fixtures {
        let pt = dir.path().join(format!("{name}.pt"));
        let want = read_expected(&dir.path().join(format!("{name}.expected.tsv")));
        assert!(!want.is_empty(), "{name}: empty sidecar");
        let got = read_state_dict(&pt).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_same(&got, &want, name);
    }
    // Spot checks that do not rely on the sidecar: the transpose of `base` and a bf16 view.
    let mixed = read_state_dict(dir.path().join("mixed.pt")).unwrap();
    let get = |n: &str| mixed.iter().find(|t| t.name == n).unwrap();
    let f32s = |t: &RawTensor| -> Vec<f32> {
        t.data.chunks(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
    };
    let (base, base_t) = (f32s(get("base")), f32s(get("base_t")));
    assert_eq!(get("base_t").shape, vec![4, 3]);
    for i in 0..3 {
        for j in 0..4 {
            assert_eq!(base[i * 4 + j].to_bits(), base_t[j * 3 + i].to_bits());
        }
    }
    assert_eq!(f32s(get("cols_1_3")), vec![1.0, 2.0, 5.0, 6.0, 9.0, 10.0, 13.0, 14.0, 17.0, 18.0]);
    assert_eq!(f32s(get("rows_2_on")), (8..20).map(|v| v as f32).collect::<Vec<_>>());
    let orig = read_state_dict(dir.path().join("orig_mod.pt")).unwrap();
    assert!(orig.iter().all(|t| t.name.starts_with("_orig_mod.")));
}

fn sample_tensors() -> Vec<RawTensor> {
    let mut tensors = Vec::new();
    let shapes: [&[usize]; 6] = [&[3, 5], &[7], &[], &[0, 4], &[2, 3, 4, 5], &[1, 1, 2, 1, 3]];
    let mut seed = 1;
    for dtype in DType::ALL {
        for shape in shapes {
            let numel: usize = shape.iter().product();
            let mut data = pseudo_random_bytes(seed, numel * dtype.size());
            if dtype == DType::Bool {
                data.iter_mut().for_each(|b| *b &= 1);
            }
            seed += 1;
            let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            let name = format!("{}.{}", dtype.torch_name(), dims.join("x"));
            tensors.push(RawTensor { name, dtype, shape: shape.to_vec(), data });
        }
    }
    // Special float values, stored as exact bit patterns (NaN payload and sign included).
    let specials: Vec<u8> = [f32::INFINITY, f32::NEG_INFINITY, -0.0, f32::MIN_POSITIVE / 4.0, f32::NAN]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .chain(0x7fc0_1234u32.to_le_bytes())
        .collect();
    tensors.push(RawTensor { name: "specials".into(), dtype: DType::F32, shape: vec![6], data: specials });
    // A larger bf16 matrix (numel > 65535 -> BININT in the pickle) and model-like names.
    tensors.push(RawTensor {
        name: "_orig_mod.transformer.h.0.attn.c_q.weight".into(),
        dtype: DType::BF16,
        shape: vec![300, 257],
        data: pseudo_random_bytes(99, 300 * 257 * 2),
    });
    tensors
        .push(RawTensor { name: "ünïcødé name ✓".into(), dtype: DType::I64, shape: vec![1], data: vec![7; 8] });
    tensors
}

#[test]
fn torch_loads_rust_written_files() {
    let dir = tempfile::tempdir().unwrap();
    let tensors = sample_tensors();
    let pt = dir.path().join("model_000042.pt");
    write_state_dict(&pt, &tensors).unwrap();
    write_expected(&dir.path().join("expected.tsv"), &tensors);
    let resaved = dir.path().join("resaved.pt");
    let out = run_python("check_written.py", &[&pt, &dir.path().join("expected.tsv"), &resaved]);
    assert!(out.contains(&format!("OK {} tensors", tensors.len())), "{out}");
    // What torch re-saves from our file reads back identically in Rust.
    assert_same(&read_state_dict(&resaved).unwrap(), &tensors, "torch re-save");
    // And our own reader round-trips our writer.
    assert_same(&read_state_dict(&pt).unwrap(), &tensors, "rust round trip");
}

#[test]
fn torch_loads_empty_and_many_entry_files() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<RawTensor>)> = vec![
        ("empty", Vec::new()),
        (
            "many",
            (0..1500)
                .map(|i| RawTensor {
                    name: format!("layer.{i}.w"),
                    dtype: DType::F32,
                    shape: vec![i % 3 + 1],
                    data: pseudo_random_bytes(i as u64, (i % 3 + 1) * 4),
                })
                .collect(),
        ),
    ];
    for (name, tensors) in cases {
        let pt = dir.path().join(format!("{name}.pt"));
        let tsv = dir.path().join(format!("{name}.tsv"));
        write_state_dict(&pt, &tensors).unwrap();
        write_expected(&tsv, &tensors);
        let out = run_python("check_written.py", &[&pt, &tsv]);
        assert!(out.contains(&format!("OK {} tensors", tensors.len())), "{name}: {out}");
        assert_same(&read_state_dict(&pt).unwrap(), &tensors, name);
    }
}

#[test]
fn written_storages_are_64_byte_aligned() {
    let dir = tempfile::tempdir().unwrap();
    let pt = dir.path().join("aligned.pt");
    let tensors = sample_tensors();
    write_state_dict(&pt, &tensors).unwrap();
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&pt).unwrap()).unwrap();
    assert_eq!(zip.len(), tensors.len() + 5);
    for i in 0..zip.len() {
        let f = zip.by_index(i).unwrap();
        assert!(f.name().starts_with("archive/"), "{}", f.name());
        assert_eq!(f.data_start() % 64, 0, "{} data at {}", f.name(), f.data_start());
    }
    assert!(!Path::new(&dir.path().join(".aligned.pt.tmp")).exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers.len(), 1, "temp files left behind: {leftovers:?}");
}

#[test]
fn corrupted_torch_files_give_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    run_python("make_fixtures.py", &[dir.path()]);
    for name in ["model_000100"] {
        let bytes = std::fs::read(dir.path().join(format!("{name}.pt"))).unwrap();
        let p = dir.path().join("bad.pt");
        for pos in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[pos] ^= [0x01u8, 0x80, 0xff][pos % 3];
            std::fs::write(&p, &bad).unwrap();
            let _ = read_state_dict(&p); // Ok or Err, but no panic
        }
        for cut in (0..bytes.len()).step_by(5) {
            std::fs::write(&p, &bytes[..cut]).unwrap();
            assert!(read_state_dict(&p).is_err(), "{name} truncated to {cut} bytes was accepted");
        }
    }
}
