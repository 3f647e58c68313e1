// Malformed and unsupported inputs must give a typed error, never a panic or an abort (the view
// checks are libtorch's): empty/garbage/legacy files, truncated zips, corrupted bytes, missing
// records, unknown opcodes, unsupported dtypes, views outside their storage, non-tensor content,
// bad writer input. Needs no Python.

#[path = "torch_pt/support.rs"]
mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use common::{pseudo_random_bytes, RawTensor};
use nanochat::checkpoint::torch_pt::{read, write, PtError};
use nanochat::pickle::PickleError;
use tch::{Kind, Tensor};
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

/// The data.pkl that the writer (libtorch's pickler) gives `tensors`.
fn pickle_of(tensors: &[(String, Tensor)]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.pt");
    write(&path, tensors).unwrap();
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
    let mut pickle = Vec::new();
    zip.by_name("archive/data.pkl").unwrap().read_to_end(&mut pickle).unwrap();
    pickle
}

fn replace(bytes: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let at = bytes.windows(needle.len()).position(|w| w == needle).unwrap_or_else(|| panic!("{needle:?} not found"));
    [&bytes[..at], with, &bytes[at + needle.len()..]].concat()
}

/// A one-tensor pickle: {"w": f32 storage "0" of `numel` elements viewed with `shape`}, its storage
/// type replaced by `storage_class`.
fn one_tensor_pickle(storage_class: &str, shape: &[i64]) -> Vec<u8> {
    let p = pickle_of(&[("w".into(), Tensor::zeros(shape, (Kind::Float, tch::Device::Cpu)))]);
    replace(&p, b"\nFloatStorage\n", format!("\n{storage_class}\n").as_bytes())
}

fn valid_file(dir: &Path) -> PathBuf {
    let path = dir.join("valid.pt");
    let tensors = [
        RawTensor::new("a", Kind::Float, &[2, 3], pseudo_random_bytes(1, 24)),
        RawTensor::new("b", Kind::BFloat16, &[4], pseudo_random_bytes(2, 8)),
    ];
    write(&path, &common::tensors(&tensors)).unwrap();
    path
}

#[test]
fn not_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.pt");
    std::fs::write(&p, b"").unwrap();
    assert!(matches!(read(&p), Err(PtError::NotTorchArchive(_))));
    std::fs::write(&p, pseudo_random_bytes(3, 1000)).unwrap();
    assert!(matches!(read(&p), Err(PtError::NotTorchArchive(_))));
    // Legacy torch.save format starts with a pickle (magic number), not a zip.
    std::fs::write(&p, b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.").unwrap();
    let err = read(&p).unwrap_err();
    assert!(err.to_string().contains("legacy"), "{err}");
    assert!(matches!(read(&dir.path().join("missing.pt")), Err(PtError::Io { .. })));
    // A zip without data.pkl.
    raw_zip(&p, &[("archive/version", b"3\n")]);
    assert!(matches!(read(&p), Err(PtError::NotTorchArchive(_))));
}

#[test]
fn truncated_and_corrupted_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(valid_file(dir.path())).unwrap();
    let p = dir.path().join("cut.pt");
    for cut in (0..bytes.len()).step_by(7).chain([bytes.len() - 1]) {
        std::fs::write(&p, &bytes[..cut]).unwrap();
        assert!(read(&p).is_err(), "truncated at {cut} of {} was accepted", bytes.len());
    }
    // Flip single bytes everywhere: no flip may panic, and every flip inside a record's data that
    // the reader consumes (data.pkl, byteorder, storages) must be reported (the zip CRC covers
    // them; libtorch's own reader would not notice). Flips in alignment padding, timestamps and
    // similar header fields may legitimately go unnoticed.
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
        let result = read(&p);
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
    write(&path, &common::tensors(&[RawTensor::new("t", Kind::Uint8, &[64], data.clone())])).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.windows(64).position(|w| w == data.as_slice()).unwrap();
    bytes[at + 10] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let err = read(&path).unwrap_err();
    assert!(matches!(err, PtError::Io { .. } | PtError::Zip(_)), "{err:?}");
}

#[test]
fn pickle_level_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.pt");
    let storage = [0u8; 24];

    // Unknown opcode (0xff) right after PROTO.
    raw_zip(&p, &[("archive/data.pkl", b"\x80\x02\xff."), ("archive/data/0", &storage)]);
    let err = read(&p).unwrap_err();
    assert!(matches!(err, PtError::Pickle(PickleError::UnknownOpcode { opcode: 0xff, offset: 2 })), "{err:?}");

    // Unsupported dtype.
    let pk = one_tensor_pickle("ComplexFloatStorage", &[3]);
    raw_zip(&p, &[("archive/data.pkl", &pk), ("archive/data/0", &storage)]);
    let err = read(&p).unwrap_err();
    assert!(matches!(&err, PtError::UnsupportedDtype(s) if s == "torch.ComplexFloatStorage"), "{err:?}");

    // Storage record missing.
    let pk = one_tensor_pickle("FloatStorage", &[2, 3]);
    raw_zip(&p, &[("archive/data.pkl", &pk)]);
    assert!(matches!(read(&p), Err(PtError::MissingRecord(r)) if r == "archive/data/0"));

    // Storage record shorter than the declared storage.
    raw_zip(&p, &[("archive/data.pkl", &pk), ("archive/data/0", &storage[..20])]);
    assert!(matches!(read(&p), Err(PtError::BadTensor { .. })));

    // Truncated pickle.
    raw_zip(&p, &[("archive/data.pkl", &pk[..pk.len() / 2]), ("archive/data/0", &storage)]);
    assert!(matches!(read(&p), Err(PtError::Pickle(PickleError::Malformed { .. }))));

    // Top level is not a dict; a value is not a tensor.
    raw_zip(&p, &[("archive/data.pkl", b"\x80\x02]q\x00.")]);
    assert!(matches!(read(&p), Err(PtError::Unsupported(_))));
    raw_zip(&p, &[("archive/data.pkl", b"\x80\x02}q\x00(X\x04\x00\x00\x00stepK\x05u.")]);
    let err = read(&p).unwrap_err();
    assert!(err.to_string().contains("\"step\" is a int"), "{err}");

    // Big-endian checkpoints are refused rather than misread.
    raw_zip(&p, &[("archive/data.pkl", &pk), ("archive/byteorder", b"big"), ("archive/data/0", &storage)]);
    assert!(matches!(read(&p), Err(PtError::Unsupported(_))));

    // The same archive with a correct record reads fine (the cases above fail for their reason).
    raw_zip(&p, &[("archive/data.pkl", &pk), ("archive/byteorder", b"little"), ("archive/data/0", &storage)]);
    let ok = read(&p).unwrap();
    assert_eq!(ok[0].1.size(), vec![2, 3]);
}

#[test]
fn view_outside_storage_is_an_error() {
    // Hand-edit the size tuple of a valid pickle: shape (2, 3) -> (2, 4) over a 6-element storage;
    // libtorch's as_strided refuses it.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.pt");
    let pk = one_tensor_pickle("FloatStorage", &[2, 3]);
    // libtorch's pickler writes the size as MARK, BININT1 2, BININT1 3, TUPLE.
    let bad = replace(&pk, b"(K\x02K\x03t", b"(K\x02K\x04t");
    raw_zip(&p, &[("archive/data.pkl", &bad), ("archive/data/0", &[0u8; 24])]);
    let err = read(&p).unwrap_err();
    assert!(matches!(&err, PtError::BadTensor { name, .. } if name == "w"), "{err:?}");
    // A negative stride and a negative offset, too.
    for (needle, with) in
        [(&b"(K\x03K\x01t"[..], &b"(K\x03J\xff\xff\xff\xfft"[..]), (b"K\x00(K\x02", b"J\xff\xff\xff\xff(K\x02")]
    {
        let bad = replace(&pk, needle, with);
        raw_zip(&p, &[("archive/data.pkl", &bad), ("archive/data/0", &[0u8; 24])]);
        let err = read(&p).unwrap_err();
        assert!(matches!(&err, PtError::BadTensor { name, .. } if name == "w"), "{err:?}");
    }
}

#[test]
fn fuzzed_pickles_never_panic() {
    // Every prefix and thousands of single-byte changes of a real data.pkl go through the whole
    // reader: the unpickler, then libtorch's view checks on whatever the changed bytes declare.
    let shapes: [&[i64]; 3] = [&[2, 3], &[], &[1, 2, 3, 4]];
    let tensors: Vec<(String, Tensor)> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| (["a", "b", "c"][i].to_string(), Tensor::ones(*s, (Kind::BFloat16, tch::Device::Cpu))))
        .collect();
    let pk = pickle_of(&tensors);
    let storages: Vec<Vec<u8>> = tensors.iter().map(|(_, t)| RawTensor::of("", t).data).collect();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("fuzz.pt");
    let file_with = |pickle: &[u8]| {
        raw_zip(
            &p,
            &[
                ("archive/data.pkl", pickle),
                ("archive/data/0", &storages[0]),
                ("archive/data/1", &storages[1]),
                ("archive/data/2", &storages[2]),
            ],
        )
    };
    file_with(&pk);
    assert_eq!(read(&p).unwrap().len(), 3);
    for cut in 0..pk.len() {
        file_with(&pk[..cut]);
        assert!(read(&p).is_err(), "prefix of {cut} bytes accepted");
    }
    let noise = pseudo_random_bytes(7, pk.len() * 8);
    let (mut read_fine, mut bad_views) = (0, 0);
    for (i, &b) in noise.iter().enumerate() {
        let mut bad = pk.clone();
        bad[i % pk.len()] = b;
        file_with(&bad);
        match read(&p) {
            Ok(_) => read_fine += 1,
            Err(PtError::BadTensor { .. }) => bad_views += 1,
            Err(_) => {}
        }
    }
    // Some changes leave a readable file, and some reach libtorch's checks of the view.
    assert!(read_fine > 0 && bad_views > 0, "{read_fine} read, {bad_views} refused views");
}

#[test]
fn writer_rejects_bad_input_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("out.pt");
    let t = |name: &str, n: i64| (name.to_string(), Tensor::zeros([n], (Kind::Float, tch::Device::Cpu)));
    assert!(matches!(write(&p, &[t("a", 1), t("a", 1)]), Err(PtError::InvalidInput(_))));
    assert!(matches!(write(&p, &[t("a\0b", 1)]), Err(PtError::InvalidInput(_))));
    let complex = ("c".to_string(), Tensor::zeros([2], (Kind::ComplexFloat, tch::Device::Cpu)));
    assert!(matches!(write(&p, &[t("a", 1), complex]), Err(PtError::UnsupportedDtype(_))));
    assert!(!p.exists());
    // Unwritable destination: error, and no temp file left behind.
    let missing_dir = dir.path().join("no/such/dir/out.pt");
    assert!(matches!(write(&missing_dir, &[t("a", 1)]), Err(PtError::Io { .. })));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    // Overwriting an existing file replaces it completely.
    write(&p, &[t("a", 100)]).unwrap();
    write(&p, &[t("b", 1)]).unwrap();
    let back = read(&p).unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].0, "b");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}
