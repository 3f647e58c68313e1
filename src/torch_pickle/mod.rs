// Reading and writing PyTorch `torch.save` state_dict files (`.pt`, zip serialization format).
// `read_state_dict` loads a flat `name -> tensor` dict (plain dict or OrderedDict, e.g.
// `model.state_dict()`) into contiguous little-endian byte buffers; `write_state_dict` writes
// such buffers so that `torch.load(path, weights_only=True)` returns a dict of equal tensors.
// Nothing here executes pickled code: the unpickler only interprets the objects torch uses.

pub mod archive;
pub mod dtype;
pub mod error;
pub mod pickle_reader;
pub mod pickle_writer;
pub mod state_dict;
pub mod value;

use std::collections::{HashMap, HashSet};
use std::path::Path;

pub use dtype::{DType, RawTensor};
pub use error::PtError;

use archive::{ArchiveReader, STORAGE_ALIGNMENT};
use pickle_writer::PickledTensor;

/// Archive folder name used when writing (torch uses the file stem for files and `archive` for
/// buffers; its loader accepts any single top-level folder).
pub const WRITE_PREFIX: &str = "archive";

/// Reads a `torch.save`d dict of tensors. Tensors come back in the file's order with their names
/// unchanged (a `_orig_mod.` prefix from `torch.compile` is kept), as contiguous row-major data.
pub fn read_state_dict(path: impl AsRef<Path>) -> Result<Vec<RawTensor>, PtError> {
    let path = path.as_ref();
    let mut archive = ArchiveReader::open(path)?;
    if archive.has_record("byteorder") {
        let order = archive.read_record("byteorder")?;
        if order != b"little" {
            return Err(PtError::Unsupported(format!(
                "byteorder record is {:?}; only little-endian checkpoints are supported",
                String::from_utf8_lossy(&order)
            )));
        }
    }
    let pickle = archive.read_record("data.pkl")?;
    let root = pickle_reader::unpickle(&pickle)?;
    let entries = state_dict::tensor_entries(&root)?;
    drop(root);

    // Storages can back several views; load each record once and hand the buffer over without
    // a copy when a single view covers it exactly.
    let mut uses: HashMap<String, usize> = HashMap::new();
    for (_, t) in &entries {
        *uses.entry(t.storage.key.clone()).or_default() += 1;
    }
    let mut records: HashMap<String, Vec<u8>> = HashMap::new();
    let mut out = Vec::with_capacity(entries.len());
    for (name, t) in entries {
        let key = t.storage.key.clone();
        if !records.contains_key(&key) {
            let record = archive.read_record(&format!("data/{key}"))?;
            records.insert(key.clone(), record);
        }
        let remaining = uses.get_mut(&key).map(|n| {
            *n -= 1;
            *n
        });
        let record = &records[&key];
        let geom = state_dict::check_view(&name, &t, record.len())?;
        let whole = geom.contiguous && t.offset == 0 && geom.numel * t.storage.dtype.size() == record.len();
        let data = if whole && remaining == Some(0) {
            records.remove(&key).unwrap_or_default()
        } else {
            let data = state_dict::materialize(&t, &geom, record);
            if remaining == Some(0) {
                records.remove(&key);
            }
            data
        };
        let shape = t.shape.iter().map(|&d| d as usize).collect();
        out.push(RawTensor { name, dtype: t.storage.dtype, shape, data });
    }
    Ok(out)
}

/// Writes `tensors` as a `torch.save`-compatible dict (insertion order kept), atomically
/// (temporary file + rename). Each tensor gets its own storage record, 64-byte aligned.
pub fn write_state_dict(path: impl AsRef<Path>, tensors: &[RawTensor]) -> Result<(), PtError> {
    let mut names = HashSet::new();
    for t in tensors {
        if !names.insert(t.name.as_str()) {
            return Err(PtError::InvalidInput(format!("duplicate tensor name {:?}", t.name)));
        }
        match t.expected_bytes() {
            Some(n) if n == t.data.len() => {}
            Some(n) => {
                return Err(PtError::InvalidInput(format!(
                    "tensor {:?}: shape {:?} of {} needs {n} bytes, data has {}",
                    t.name,
                    t.shape,
                    t.dtype,
                    t.data.len()
                )))
            }
            None => return Err(PtError::InvalidInput(format!("tensor {:?}: shape {:?} overflows", t.name, t.shape))),
        }
        if u32::try_from(t.name.len()).is_err() {
            return Err(PtError::InvalidInput("tensor name longer than 4 GiB".into()));
        }
    }
    let keys: Vec<String> = (0..tensors.len()).map(|i| i.to_string()).collect();
    let pickled: Vec<PickledTensor<'_>> = tensors
        .iter()
        .zip(&keys)
        .map(|(t, key)| PickledTensor { name: &t.name, dtype: t.dtype, shape: &t.shape, key })
        .collect();
    let pickle = pickle_writer::state_dict_pickle(&pickled);
    let alignment = STORAGE_ALIGNMENT.to_string();

    // Same record order as torch.save.
    let mut records: Vec<(String, &[u8])> = vec![
        ("data.pkl".into(), &pickle),
        (".format_version".into(), b"1"),
        (".storage_alignment".into(), alignment.as_bytes()),
        ("byteorder".into(), b"little"),
    ];
    for (t, key) in tensors.iter().zip(&keys) {
        records.push((format!("data/{key}"), &t.data));
    }
    records.push(("version".into(), b"3\n"));
    archive::write_archive(path.as_ref(), WRITE_PREFIX, &records)
}
