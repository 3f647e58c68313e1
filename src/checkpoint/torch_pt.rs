//! PyTorch `torch.save` state_dict files (`.pt`, the reference's `model_XXXXXX.pt`): a zip whose
//! `<folder>/data.pkl` pickles a dict of tensors, each a view of a storage kept as the record
//! `<folder>/data/<key>`.
//!
//! Writing goes through libtorch (src/checkpoint/torch_pt.cpp): its pickler and the zip writer
//! torch.save itself uses. Reading cannot: libtorch's unpickler turns `collections.OrderedDict`,
//! which every `model.state_dict()` is, into None and fails (pytorch/pytorch#100741), and its zip
//! reader checks no CRC. So the zip is read with the `zip` crate (every record's CRC checked),
//! data.pkl with the project's unpickler (src/pickle.rs), and each tensor is a libtorch view
//! (`as_strided`, which refuses a view reaching outside its storage) of its storage, made
//! contiguous. Nothing read is executed.
use std::collections::{HashMap, HashSet};
use std::ffi::{c_char, c_void, CString};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use tch::{Kind, Tensor};
use torch_sys::C_tensor;
use zip::ZipArchive;

use crate::pickle::{unpickle, PickleError, Value};

/// Why a `.pt` file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PtError {
    /// Operating-system level failure (open, read, write, rename).
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The zip container is unreadable (truncated, bad central directory, CRC mismatch, ...).
    #[error("invalid zip container: {0}")]
    Zip(#[from] zip::result::ZipError),
    /// The file is not a torch.save zip checkpoint (empty, another format, no data.pkl, ...).
    #[error("not a torch.save zip checkpoint: {0}")]
    NotTorchArchive(String),
    /// A record named by the pickle (e.g. `archive/data/3`) is missing from the zip.
    #[error("missing record {0} in archive")]
    MissingRecord(String),
    /// data.pkl is not a pickle this reader can read.
    #[error(transparent)]
    Pickle(#[from] PickleError),
    /// A storage type (e.g. `torch.ComplexFloatStorage`) or tensor kind `.pt` files here do not hold.
    #[error("unsupported tensor dtype {0}")]
    UnsupportedDtype(String),
    /// The pickle is not a flat `name -> tensor` dict, or uses a feature this reader does not know.
    #[error("unsupported checkpoint content: {0}")]
    Unsupported(String),
    /// A tensor's storage, offset, size or stride is invalid (libtorch's message where it found it).
    #[error("invalid tensor {name:?}: {msg}")]
    BadTensor { name: String, msg: String },
    /// Tensors that cannot be written (duplicate names, a NUL in a name).
    #[error("invalid tensor for writing: {0}")]
    InvalidInput(String),
    /// libtorch failed while writing the file.
    #[error("libtorch could not write the file: {0}")]
    Libtorch(String),
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> PtError + '_ {
    move |source| PtError::Io { path: path.to_path_buf(), source }
}

/// The storage types `.pt` files read and written here hold, with the tensor kind of each.
const STORAGES: [(&str, Kind); 8] = [
    ("FloatStorage", Kind::Float),
    ("BFloat16Storage", Kind::BFloat16),
    ("HalfStorage", Kind::Half),
    ("DoubleStorage", Kind::Double),
    ("LongStorage", Kind::Int64),
    ("IntStorage", Kind::Int),
    ("ByteStorage", Kind::Uint8),
    ("BoolStorage", Kind::Bool),
];

/// Reads a `torch.save`d dict of tensors (plain dict or OrderedDict, e.g. `model.state_dict()`):
/// contiguous CPU tensors, in the file's order, names unchanged (a `_orig_mod.` prefix is kept).
pub fn read(path: &Path) -> Result<Vec<(String, Tensor)>, PtError> {
    let mut archive = Archive::open(path)?;
    if archive.has("byteorder") && archive.record("byteorder")? != b"little" {
        return Err(PtError::Unsupported("a big-endian checkpoint (byteorder record is not `little`)".into()));
    }
    let root = unpickle(&archive.record("data.pkl")?)?;
    let Value::Dict(dict) = &root else {
        return Err(PtError::Unsupported(format!("top-level object is a {}, expected a dict of tensors", root.kind())));
    };
    let mut storages: HashMap<String, Tensor> = HashMap::new();
    let mut names = HashSet::new();
    let mut out = Vec::new();
    for (key, value) in &dict.borrow().0 {
        let Value::Str(name) = key else {
            return Err(PtError::Unsupported(format!("dict key is a {}, expected str", key.kind())));
        };
        if !names.insert(name.clone()) {
            return Err(PtError::Unsupported(format!("duplicate key {name:?}")));
        }
        let view = View::of(name, value)?;
        let storage = match storages.get(&view.key) {
            Some(storage) => storage.shallow_clone(),
            None => {
                let storage = archive.storage(name, &view)?;
                storages.insert(view.key.clone(), storage.shallow_clone());
                storage
            }
        };
        if storage.kind() != view.kind {
            return Err(bad(
                name,
                format!("storage {} is read as {:?} and as {:?}", view.key, storage.kind(), view.kind),
            ));
        }
        let tensor = storage
            .f_as_strided(view.size.as_slice(), view.stride.as_slice(), view.offset)
            .and_then(|t| t.f_contiguous())
            .map_err(|e| bad(name, e.to_string()))?;
        out.push((name.clone(), tensor));
    }
    Ok(out)
}

fn bad(name: &str, msg: impl Into<String>) -> PtError {
    PtError::BadTensor { name: name.to_string(), msg: msg.into() }
}

/// A tensor of data.pkl: `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`,
/// possibly inside `_rebuild_parameter(tensor, ...)`, where the storage is the persistent id
/// `('storage', torch.XStorage, key, location, numel)`.
struct View {
    key: String,
    kind: Kind,
    numel: i64,
    offset: i64,
    size: Vec<i64>,
    stride: Vec<i64>,
}

impl View {
    fn of(name: &str, value: &Value) -> Result<View, PtError> {
        let not_a_tensor = |v: &Value| {
            PtError::Unsupported(format!(
                "entry {name:?} is a {}, not a tensor (only flat name -> tensor dicts are supported)",
                v.kind()
            ))
        };
        let mut value = value;
        let args = loop {
            let Value::Object { module, name: function, args, .. } = value else { return Err(not_a_tensor(value)) };
            match (module.as_str(), function.as_str()) {
                ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor") => break &args.0,
                ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") if !args.0.is_empty() => {
                    value = &args.0[0];
                }
                _ => return Err(not_a_tensor(value)),
            }
        };
        let [Value::PersistentId(pid), offset, size, stride, ..] = args.as_slice() else {
            return Err(bad(name, "_rebuild_tensor arguments are not (storage, offset, size, stride, ...)"));
        };
        let [Value::Tuple(pid)] = pid.0.as_slice() else { return Err(bad(name, "the storage id is not a tuple")) };
        let [Value::Str(tag), class, key, _location, Value::Int(numel)] = pid.0.as_slice() else {
            return Err(bad(name, "the storage id is not ('storage', type, key, location, numel)"));
        };
        if tag != "storage" {
            return Err(PtError::Unsupported(format!("persistent id of type {tag:?}")));
        }
        let Value::Global { module, name: class } = class else {
            return Err(bad(name, format!("the storage type is a {}", class.kind())));
        };
        let kind = STORAGES
            .iter()
            .find(|(storage, _)| module == "torch" && storage == class)
            .map(|&(_, kind)| kind)
            .ok_or_else(|| PtError::UnsupportedDtype(format!("{module}.{class}")))?;
        let key = match key {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            other => return Err(bad(name, format!("the storage key is a {}", other.kind()))),
        };
        let Value::Int(offset) = offset else { return Err(bad(name, "the storage offset is not an int")) };
        Ok(View { key, kind, numel: *numel, offset: *offset, size: ints(name, size)?, stride: ints(name, stride)? })
    }
}

/// A tuple of ints (a `torch.Size(...)` too), as the size and stride of a view are pickled.
fn ints(name: &str, value: &Value) -> Result<Vec<i64>, PtError> {
    let items = match value {
        Value::Tuple(t) => &t.0,
        Value::Object { module, name: class, args, .. } if module == "torch" && class == "Size" => {
            return match args.0.as_slice() {
                [inner] => ints(name, inner),
                _ => Err(bad(name, "torch.Size(...) with other than one argument")),
            };
        }
        other => return Err(bad(name, format!("a size or stride is a {}, expected a tuple", other.kind()))),
    };
    items
        .iter()
        .map(|v| if let Value::Int(i) = v { Ok(*i) } else { Err(bad(name, "a size or stride is not an int")) })
        .collect()
}

/// The records of a torch zip checkpoint, under its one top-level folder (torch names it after the
/// file; any name is accepted).
struct Archive {
    zip: ZipArchive<BufReader<File>>,
    folder: String,
    path: PathBuf,
    file_len: u64,
}

impl Archive {
    fn open(path: &Path) -> Result<Self, PtError> {
        let mut file = File::open(path).map_err(io_error(path))?;
        let file_len = file.metadata().map_err(io_error(path))?.len();
        let mut magic = Vec::with_capacity(4);
        (&mut file).take(4).read_to_end(&mut magic).map_err(io_error(path))?;
        if magic.first() == Some(&0x80) {
            return Err(PtError::NotTorchArchive(
                "legacy (non-zip, torch < 1.6) serialization format is not supported; re-save it with a newer torch"
                    .into(),
            ));
        }
        if magic != b"PK\x03\x04" {
            return Err(PtError::NotTorchArchive("no zip signature at the start of the file".into()));
        }
        let zip = ZipArchive::new(BufReader::new(file))?;
        let folders: Vec<&str> = zip
            .file_names()
            .filter_map(|n| n.strip_suffix("/data.pkl"))
            .filter(|folder| !folder.is_empty() && !folder.contains('/'))
            .collect();
        let folder = match folders.as_slice() {
            [one] => one.to_string(),
            [] => return Err(PtError::NotTorchArchive("no <name>/data.pkl record in the zip".into())),
            many => return Err(PtError::NotTorchArchive(format!("several data.pkl records ({})", many.join(", ")))),
        };
        Ok(Archive { zip, folder, path: path.to_path_buf(), file_len })
    }

    fn has(&self, name: &str) -> bool {
        let full = format!("{}/{name}", self.folder);
        self.zip.file_names().any(|n| n == full)
    }

    /// Reads `<folder>/<name>` whole; the zip crate checks its CRC at the end.
    fn record(&mut self, name: &str) -> Result<Vec<u8>, PtError> {
        let full = format!("{}/{name}", self.folder);
        let mut entry = match self.zip.by_name(&full) {
            Err(zip::result::ZipError::FileNotFound) => return Err(PtError::MissingRecord(full)),
            other => other?,
        };
        if entry.compression() != zip::CompressionMethod::Stored {
            return Err(PtError::NotTorchArchive(format!("record {full} is compressed; torch stores records")));
        }
        // A stored record cannot be larger than the file: a bigger size is corruption, and
        // trusting it would mean a huge allocation.
        if entry.size() > self.file_len {
            return Err(PtError::NotTorchArchive(format!("record {full} claims more bytes than the file has")));
        }
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut bytes).map_err(io_error(&self.path))?;
        Ok(bytes)
    }

    /// The storage a view reads: a 1-d tensor of the declared number of elements.
    fn storage(&mut self, name: &str, view: &View) -> Result<Tensor, PtError> {
        let bytes = self.record(&format!("data/{}", view.key))?;
        let element = view.kind.elt_size_in_bytes();
        let declared = usize::try_from(view.numel).ok().and_then(|n| n.checked_mul(element));
        let Some(declared) = declared.filter(|&n| n <= bytes.len()) else {
            return Err(bad(
                name,
                format!(
                    "storage {} declares {} elements but its record has {} bytes",
                    view.key,
                    view.numel,
                    bytes.len()
                ),
            ));
        };
        Tensor::f_from_data_size(&bytes[..declared], &[view.numel], view.kind).map_err(|e| bad(name, e.to_string()))
    }
}

extern "C" {
    fn nc_pt_save(
        names: *const *const c_char,
        tensors: *const *mut C_tensor,
        n: usize,
        sink: extern "C" fn(*mut c_void, *const c_void, usize) -> usize,
        ctx: *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
}

/// Where libtorch's zip writer sends the file's bytes.
struct Sink {
    out: BufWriter<File>,
    error: Option<std::io::Error>,
}

/// Appends `n` bytes to the [`Sink`] at `ctx`. Always reports them all written (see
/// torch_pt.cpp): after a failure the error is kept and the rest is dropped.
extern "C" fn write_to_sink(ctx: *mut c_void, data: *const c_void, n: usize) -> usize {
    // SAFETY: `ctx` is the `Sink` that `write` lends to nc_pt_save for the duration of the call.
    let sink = unsafe { &mut *(ctx as *mut Sink) };
    if sink.error.is_none() && n > 0 {
        // SAFETY: libtorch passes `n` readable bytes at `data`.
        let bytes = unsafe { std::slice::from_raw_parts(data as *const u8, n) };
        if let Err(e) = sink.out.write_all(bytes) {
            sink.error = Some(e);
        }
    }
    n
}

/// Writes `tensors` as a `torch.save`-compatible dict (their order kept; `torch.load(path,
/// weights_only=True)` returns equal contiguous CPU tensors without autograd state), atomically
/// (a temporary file renamed over `path`). Tensors of kinds [`read`] does not read are refused.
pub fn write(path: &Path, tensors: &[(String, Tensor)]) -> Result<(), PtError> {
    let mut seen = HashSet::new();
    let mut names = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        if !STORAGES.iter().any(|&(_, kind)| kind == t.kind()) {
            return Err(PtError::UnsupportedDtype(format!("{:?} (tensor {name:?})", t.kind())));
        }
        if !seen.insert(name.as_str()) {
            return Err(PtError::InvalidInput(format!("duplicate tensor name {name:?}")));
        }
        names.push(CString::new(name.as_str()).map_err(|_| PtError::InvalidInput(format!("NUL in name {name:?}")))?);
    }
    let name_ptrs: Vec<*const c_char> = names.iter().map(|n| n.as_ptr()).collect();
    let mut handles: Vec<Tensor> = tensors.iter().map(|(_, t)| t.shallow_clone()).collect();
    let tensor_ptrs: Vec<*mut C_tensor> = handles.iter_mut().map(|t| t.as_mut_ptr()).collect();
    let bytes: u64 = tensors.iter().map(|(_, t)| (t.numel() * t.kind().elt_size_in_bytes()) as u64).sum();

    let tmp = crate::fsutil::temporary_path(path);
    let file = File::create(&tmp).map_err(io_error(path))?;
    let mut sink = Sink { out: BufWriter::with_capacity(1 << 20, file), error: None };
    let done = crate::shim::call(|err, len| {
        // SAFETY: the names and tensors live until the call returns; `sink` is only used through
        // `write_to_sink` during it.
        unsafe {
            nc_pt_save(
                name_ptrs.as_ptr(),
                tensor_ptrs.as_ptr(),
                tensor_ptrs.len(),
                write_to_sink,
                &mut sink as *mut Sink as *mut c_void,
                err,
                len,
            )
        }
    });
    let Sink { out, error } = sink;
    let flushed = match error {
        Some(e) => {
            drop(out);
            Err(e)
        }
        None => out.into_inner().map(drop).map_err(|e| e.into_error()),
    };
    let result = match (flushed, done) {
        (Err(e), _) => Err(io_error(path)(crate::fsutil::explain_write_error(e, path, bytes))),
        (Ok(()), Err(message)) => Err(PtError::Libtorch(message)),
        (Ok(()), Ok(())) => crate::fsutil::commit_temporary(&tmp, path, bytes).map_err(io_error(path)),
    };
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
