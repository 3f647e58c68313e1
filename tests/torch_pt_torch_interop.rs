// Interop with real PyTorch: Rust reads files torch.save wrote (fixtures made by
// tests/torch_pt/make_fixtures.py, compared with the sidecar values torch dumped), and torch.load
// (weights_only=True, also mmap=True) reads files Rust wrote through libtorch
// (tests/torch_pt/check_written.py). Needs a Python with torch 2.x: env NANOCHAT_PYTHON, default
// .venv/bin/python.

#[path = "torch_pt/support.rs"]
mod common;

use common::{
    assert_same, pseudo_random_bytes, read_expected, read_raw, run_python, tensors, write_expected, RawTensor,
};
use nanochat::checkpoint::torch_pt::write;
use tch::{Kind, Tensor};

#[test]
fn reads_torch_saved_fixtures() {
    let dir = tempfile::tempdir().unwrap();
    run_python("make_fixtures.py", &[dir.path()]);
    let fixtures = ["mixed", "model_000100", "model_bf16", "orig_mod", "many", "params", "from_buffer", "unaligned"];
    for name in fixtures {
        let pt = dir.path().join(format!("{name}.pt"));
        let want = read_expected(&dir.path().join(format!("{name}.expected.tsv")));
        assert!(!want.is_empty(), "{name}: empty sidecar");
        assert_same(&read_raw(&pt), &want, name);
    }
    // Spot checks that do not rely on the sidecar: the transpose of `base` and a bf16 view.
    let mixed = read_raw(&dir.path().join("mixed.pt"));
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
    let orig = read_raw(&dir.path().join("orig_mod.pt"));
    assert!(orig.iter().all(|t| t.name.starts_with("_orig_mod.")));
}

fn sample_tensors() -> Vec<RawTensor> {
    let mut raw = Vec::new();
    let shapes: [&[i64]; 6] = [&[3, 5], &[7], &[], &[0, 4], &[2, 3, 4, 5], &[1, 1, 2, 1, 3]];
    let mut seed = 1;
    for (dtype, kind) in common::KINDS {
        for shape in shapes {
            let numel: i64 = shape.iter().product();
            let mut data = pseudo_random_bytes(seed, numel as usize * kind.elt_size_in_bytes());
            if kind == Kind::Bool {
                data.iter_mut().for_each(|b| *b &= 1);
            }
            seed += 1;
            let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            raw.push(RawTensor::new(&format!("{dtype}.{}", dims.join("x")), kind, shape, data));
        }
    }
    // Special float values, stored as exact bit patterns (NaN payload and sign included).
    let specials: Vec<u8> = [f32::INFINITY, f32::NEG_INFINITY, -0.0, f32::MIN_POSITIVE / 4.0, f32::NAN]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .chain(0x7fc0_1234u32.to_le_bytes())
        .collect();
    raw.push(RawTensor::new("specials", Kind::Float, &[6], specials));
    // A larger bf16 matrix (numel > 65535 -> BININT in the pickle) and model-like names.
    let big = pseudo_random_bytes(99, 300 * 257 * 2);
    raw.push(RawTensor::new("_orig_mod.transformer.h.0.attn.c_q.weight", Kind::BFloat16, &[300, 257], big));
    raw.push(RawTensor::new("ünïcødé name ✓", Kind::Int64, &[1], vec![7; 8]));
    raw
}

/// Views of larger tensors and a parameter that requires grad, as a model hands them over.
fn views() -> Vec<(String, Tensor)> {
    let base = Tensor::arange(60, (Kind::Float, tch::Device::Cpu)).view([5, 12]);
    vec![
        ("transposed".into(), base.tr()),
        ("rows_1_3".into(), base.narrow(0, 1, 2)),
        ("every_other".into(), base.select(0, 4).slice(0, 1, 12, 2)),
        ("expanded".into(), Tensor::arange(3, (Kind::Int64, tch::Device::Cpu)).expand([4, 3], false)),
        ("parameter".into(), Tensor::ones([2, 2], (Kind::BFloat16, tch::Device::Cpu)).set_requires_grad(true)),
    ]
}

#[test]
fn torch_loads_rust_written_files() {
    let dir = tempfile::tempdir().unwrap();
    let raw = sample_tensors();
    let mut written = tensors(&raw);
    written.extend(views());
    let want: Vec<RawTensor> = written.iter().map(|(name, t)| RawTensor::of(name, t)).collect();
    let pt = dir.path().join("model_000042.pt");
    write(&pt, &written).unwrap();
    write_expected(&dir.path().join("expected.tsv"), &want);
    let resaved = dir.path().join("resaved.pt");
    let out = run_python("check_written.py", &[&pt, &dir.path().join("expected.tsv"), &resaved]);
    assert!(out.contains(&format!("OK {} tensors", want.len())), "{out}");
    // What torch re-saves from our file reads back identically in Rust.
    assert_same(&read_raw(&resaved), &want, "torch re-save");
    // And our own reader round-trips our writer.
    assert_same(&read_raw(&pt), &want, "rust round trip");
}

#[test]
fn torch_loads_empty_many_entry_and_shared_storage_files() {
    let dir = tempfile::tempdir().unwrap();
    let shared = Tensor::arange(6, (Kind::Float, tch::Device::Cpu));
    let cases: Vec<(&str, Vec<(String, Tensor)>)> = vec![
        ("empty", Vec::new()),
        (
            "many",
            (0..1500)
                .map(|i| {
                    let n = i % 3 + 1;
                    let r = RawTensor::new(
                        &format!("layer.{i}.w"),
                        Kind::Float,
                        &[n],
                        pseudo_random_bytes(i as u64, n as usize * 4),
                    );
                    (r.name.clone(), r.tensor())
                })
                .collect(),
        ),
        ("tied", vec![("wte".into(), shared.shallow_clone()), ("lm_head".into(), shared.shallow_clone())]),
    ];
    for (name, written) in cases {
        let pt = dir.path().join(format!("{name}.pt"));
        let tsv = dir.path().join(format!("{name}.tsv"));
        let want: Vec<RawTensor> = written.iter().map(|(n, t)| RawTensor::of(n, t)).collect();
        write(&pt, &written).unwrap();
        write_expected(&tsv, &want);
        let out = run_python("check_written.py", &[&pt, &tsv]);
        assert!(out.contains(&format!("OK {} tensors", want.len())), "{name}: {out}");
        assert_same(&read_raw(&pt), &want, name);
    }
    // Tensors sharing a storage share its record, as torch.save writes them.
    let zip = zip::ZipArchive::new(std::fs::File::open(dir.path().join("tied.pt")).unwrap()).unwrap();
    assert_eq!(zip.file_names().filter(|n| n.contains("/data/")).count(), 1);
}

#[test]
fn written_files_have_torch_saves_records_64_byte_aligned() {
    let dir = tempfile::tempdir().unwrap();
    let pt = dir.path().join("aligned.pt");
    let mut written = tensors(&sample_tensors());
    written.extend(views());
    write(&pt, &written).unwrap();
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&pt).unwrap()).unwrap();
    // torch.save's records, in its order; a view is stored alone, not with the tensor it views.
    let mut want: Vec<String> =
        ["data.pkl", ".format_version", ".storage_alignment", "byteorder"].map(String::from).to_vec();
    want.extend((0..written.len()).map(|i| format!("data/{i}")));
    want.extend(["version".to_string(), ".data/serialization_id".to_string()]);
    let want: Vec<String> = want.iter().map(|n| format!("archive/{n}")).collect();
    let names: Vec<String> = (0..zip.len()).map(|i| zip.by_index(i).unwrap().name().to_string()).collect();
    assert_eq!(names, want);
    for i in 0..zip.len() {
        let f = zip.by_index(i).unwrap();
        assert_eq!(f.data_start() % 64, 0, "{} data at {}", f.name(), f.data_start());
        if let Some(k) = f.name().strip_prefix("archive/data/") {
            let t = &written[k.parse::<usize>().unwrap()].1;
            assert_eq!(f.size() as usize, t.numel() * t.kind().elt_size_in_bytes(), "{}", f.name());
        }
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers.len(), 1, "temp files left behind: {leftovers:?}");
}

#[test]
fn corrupted_torch_files_give_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    run_python("make_fixtures.py", &[dir.path()]);
    let read = nanochat::checkpoint::torch_pt::read;
    for name in ["model_000100"] {
        let bytes = std::fs::read(dir.path().join(format!("{name}.pt"))).unwrap();
        let p = dir.path().join("bad.pt");
        for pos in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[pos] ^= [0x01u8, 0x80, 0xff][pos % 3];
            std::fs::write(&p, &bad).unwrap();
            let _ = read(&p); // Ok or Err, but no panic
        }
        for cut in (0..bytes.len()).step_by(5) {
            std::fs::write(&p, &bytes[..cut]).unwrap();
            assert!(read(&p).is_err(), "{name} truncated to {cut} bytes was accepted");
        }
    }
}
