// Malformed and unsupported inputs must give a typed error, never a panic: empty/garbage/legacy
// files, truncated zips, corrupted bytes, missing records, unknown opcodes, unsupported dtypes,
// views outside their storage, non-tensor content, bad writer input. Needs no Python.

#[path = "torch_pt/support.rs"]
mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

use common::pseudo_random_bytes;
use nanochat::torch_pickle::pickle_reader::unpickle;
use nanochat::torch_pickle::pickle_writer::{state_dict_pickle, PickledTensor};
use nanochat::torch_pickle::state_dict::tensor_entries;
use nanochat::torch_pickle::{read_state_dict, write_state_dict, DType, PtError, RawTensor};
use zip::write::FileOptions;
use zip::{CompressionMethod, ZipWriter};

/// Writes a zip with the given (full name, bytes) entries, independent of the crate's writer.
fn raw_zip(path: &Path, entries: &[(&str, &[u8])]) {
    let mut zip = ZipWriter::new(std::fs::File::create(path).unwrap());
    for (name, data) in entries {
        zip.start_file(*name, FileOptions::default().compression_method(CompressionMethod::Stored)).unwrap();
        zip.write_all(data).unwrap();
    }
    zip.finish().unwrap();
}

/// A one-tensor pickle: {"w": f32 storage "0" of `numel` elements viewed with `shape`}.
fn one_tensor_pickle(storage_class: &str, shape: &[usize]) -> Vec<u8> {
    let p = state_dict_pickle(&[PickledTensor { name: "w", dtype: DType::F32, shape, key: "0" }]);
    // Swap the storage class name in the GLOBAL operand.
    let needle = b"\nFloatStorage\n";
    let at = p.windows(needle.len()).position(|w| w == needle).unwrap();
    let mut out = p[..at + 1].to_vec();
    out.extend_from_slice(storage_class.as_bytes());
    out.extend_from_slice(&p[at + needle.len() - 1..]);
    out
}

fn valid_file(dir: &Path) -> PathBuf {
    let path = dir.join("valid.pt");
    let tensors = vec![
        RawTensor { name: "a".into(), dtype: DType::F32, shape: vec![2, 3], data: pseudo_random_bytes(1, 24) },
        RawTensor { name: "b".into(), dtype: DType::BF16, shape: vec![4], data: pseudo_random_bytes(2, 8) },
    ];
    write_state_dict(&path, &tensors).unwrap();
    path
}

#[test]
fn not_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.pt");
    std::fs::write(&p, b"").unwrap();
    assert!(matches!(read_state_dict(&p), Err(PtError::NotTorchArchive(_))));
    std::fs::write(&p, pseudo_random_bytes(3, 1000)).unwrap();
    assert!(matches!(read_state_dict(&p), Err(PtError::NotTorchArchive(_))));
    // Legacy torch.save format starts with a pickle (magic number), not a zip.
    std::fs::write(&p, b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.").unwrap();
    let err = read_state_dict(&p).unwrap_err();
    assert!(err.to_string().contains("legacy"), "{err}");
    assert!(matches!(read_state_dict(dir.path().join("missing.pt")), Err(PtError::Io { .. })));
    // A zip without data.pkl.
    raw_zip(&p, &[("archive/version", b"3\n")]);
    assert!(matches!(read_state_dict(&p), Err(PtError::NotTorchArchive(_))));
}

#[test]
fn truncated_and_corrupted_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(valid_file(dir.path())).unwrap();
    let p = dir.path().join("cut.pt");
    for cut in (0..bytes.len()).step_by(7).chain([bytes.len() - 1]) {
        std::fs::write(&p, &bytes[..cut]).unwrap();
        assert!(read_state_dict(&p).is_err(), "truncated at {cut} of {} was accepted", bytes.len());
    }
    // Flip single bytes everywhere: no flip may panic, and every flip inside a record's data
    // that the reader consumes (data.pkl, byteorder, storages) must be reported (the zip CRC covers them). Flips in alignment
    // padding, timestamps and similar header fields may legitimately go unnoticed.
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes.clone())).unwrap();
    let mut data_ranges = Vec::new();
    for i in 0..zip.len() {
        let f = zip.by_index(i).unwrap();
        // Records the reader consumes (it ignores version, .format_version, ...).
        if !(f.name().ends_with("/data.pkl") || f.name().ends_with("/byteorder") || f.name().contains("/data/")) {
            continue;
        }
        data_ranges.push(f.data_start() as usize..(f.data_start() + f.compressed_size()) as usize);
    }
    let mut in_data = 0;
    for pos in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[pos] ^= 0x5a;
        std::fs::write(&p, &bad).unwrap();
        let result = read_state_dict(&p);
        if data_ranges.iter().any(|r| r.contains(&pos)) {
            in_data += 1;
            assert!(result.is_err(), "corrupted byte {pos} inside record data went unnoticed");
        }
    }
    assert!(in_data > 24 + 8, "data ranges not found: {data_ranges:?}");
}

#[test]
fn storage_data_corruption_fails_the_crc() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crc.pt");
    let data: Vec<u8> = (0..64u8).map(|b| b | 0x80).collect(); // a pattern absent from headers
    let t = RawTensor { name: "t".into(), dtype: DType::U8, shape: vec![64], data: data.clone() };
    write_state_dict(&path, &[t]).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.windows(64).position(|w| w == data.as_slice()).unwrap();
    bytes[at + 10] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let err = read_state_dict(&path).unwrap_err();
    assert!(matches!(err, PtError::Io { .. } | PtError::Zip(_)), "{err:?}");
}

#[test]
fn pickle_level_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.pt");
    let storage = [0u8; 24];

    // Unknown opcode (0xff) right after PROTO.
    raw_zip(&p, &[("archive/data.pkl", b"\x80\x02\xff."), ("archive/data/0", &storage)]);
    assert!(matches!(read_state_dict(&p), Err(PtError::UnknownOpcode { opcode: 0xff, offset: 2 })));

    // Unsupported dtype.
    let pk = one_tensor_pickle("ComplexFloatStorage", &[3]);
    raw_zip(&p, &[("archive/data.pkl", &pk), ("archive/data/0", &storage)]);
    let err = read_state_dict(&p).unwrap_err();
    assert!(matches!(&err, PtError::UnsupportedDtype(s) if s == "torch.ComplexFloatStorage"), "{err:?}");

    // Storage record missing.
    let pk = one_tensor_pickle("FloatStorage", &[2, 3]);
    raw_zip(&p, &[("archive/data.pkl", &pk)]);
    assert!(matches!(read_state_dict(&p), Err(PtError::MissingRecord(r)) if r == "archive/data/0"));

    // Storage record shorter than the declared storage.
    raw_zip(&p, &[("archive/data.pkl", &pk), ("archive/data/0", &storage[..20])]);
    assert!(matches!(read_state_dict(&p), Err(PtError::BadTensor { .. })));

    // Truncated pickle.
    raw_zip(&p, &[("archive/data.pkl", &pk[..pk.len() / 2]), ("archive/data/0", &storage)]);
    assert!(matches!(read_state_dict(&p), Err(PtError::Pickle { .. })));

    // Top level is not a dict; a value is not a tensor.
    raw_zip(&p, &[("archive/data.pkl", b"\x80\x02]q\x00.")]);
    assert!(matches!(read_state_dict(&p), Err(PtError::Unsupported(_))));
    raw_zip(&p, &[("archive/data.pkl", b"\x80\x02}q\x00(X\x04\x00\x00\x00stepK\x05u.")]);
    let err = read_state_dict(&p).unwrap_err();
    assert!(err.to_string().contains("\"step\" is a int"), "{err}");

    // Big-endian checkpoints are refused rather than misread.
    raw_zip(&p, &[("archive/data.pkl", &pk), ("archive/byteorder", b"big"), ("archive/data/0", &storage)]);
    assert!(matches!(read_state_dict(&p), Err(PtError::Unsupported(_))));

    // The same archive with a correct record reads fine (the cases above fail for their reason).
    raw_zip(&p, &[("archive/data.pkl", &pk), ("archive/byteorder", b"little"), ("archive/data/0", &storage)]);
    let ok = read_state_dict(&p).unwrap();
    assert_eq!(ok[0].shape, vec![2, 3]);
}

#[test]
fn view_outside_storage_is_an_error() {
    // Hand-edit the size tuple of a valid pickle: shape (2, 3) -> (2, 4) over a 6-element storage.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.pt");
    let pk = state_dict_pickle(&[PickledTensor { name: "w", dtype: DType::F32, shape: &[2, 3], key: "0" }]);
    // numel 6 (K\x06 in the persistent id) stays; size tuple K\x02 K\x03 \x86 -> K\x02 K\x04 \x86.
    let needle = b"K\x02K\x03\x86";
    let at = pk.windows(needle.len()).position(|w| w == needle).unwrap();
    let mut bad = pk.clone();
    bad[at + 3] = 4;
    raw_zip(&p, &[("archive/data.pkl", &bad), ("archive/data/0", &[0u8; 24])]);
    let err = read_state_dict(&p).unwrap_err();
    assert!(matches!(&err, PtError::BadTensor { name, .. } if name == "w"), "{err:?}");
}

#[test]
fn fuzzed_pickles_never_panic() {
    let shapes: [&[usize]; 3] = [&[2, 3], &[], &[1, 2, 3, 4]];
    let tensors: Vec<PickledTensor<'_>> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| PickledTensor { name: ["a", "b", "c"][i], dtype: DType::BF16, shape: s, key: ["0", "1", "2"][i] })
        .collect();
    let pk = state_dict_pickle(&tensors);
    let root = unpickle(&pk).unwrap();
    assert_eq!(tensor_entries(&root).unwrap().len(), 3);
    for cut in 0..pk.len() {
        assert!(unpickle(&pk[..cut]).is_err(), "prefix of {cut} bytes accepted");
    }
    let noise = pseudo_random_bytes(7, pk.len() * 8);
    for (i, &b) in noise.iter().enumerate() {
        let mut bad = pk.clone();
        bad[i % pk.len()] = b;
        if let Ok(v) = unpickle(&bad) {
            let _ = tensor_entries(&v);
        }
    }
}

#[test]
fn writer_rejects_bad_input_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("out.pt");
    let t = |name: &str, shape: Vec<usize>, n: usize| RawTensor {
        name: name.into(),
        dtype: DType::F32,
        shape,
        data: vec![0; n],
    };
    assert!(matches!(write_state_dict(&p, &[t("a", vec![2, 2], 15)]), Err(PtError::InvalidInput(_))));
    assert!(matches!(write_state_dict(&p, &[t("a", vec![1], 4), t("a", vec![1], 4)]), Err(PtError::InvalidInput(_))));
    assert!(matches!(write_state_dict(&p, &[t("a", vec![usize::MAX, 2], 0)]), Err(PtError::InvalidInput(_))));
    assert!(!p.exists());
    // Unwritable destination: error, and no temp file left behind.
    let missing_dir = dir.path().join("no/such/dir/out.pt");
    assert!(matches!(write_state_dict(&missing_dir, &[t("a", vec![1], 4)]), Err(PtError::Io { .. })));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    // Overwriting an existing file replaces it completely.
    write_state_dict(&p, &[t("a", vec![100], 400)]).unwrap();
    write_state_dict(&p, &[t("b", vec![1], 4)]).unwrap();
    let back = read_state_dict(&p).unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].name, "b");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}
