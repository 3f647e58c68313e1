// Typed errors for reading and writing torch.save (.pt) files.
// Every malformed-input path (bad zip, bad pickle, unknown opcode, unsupported dtype,
// out-of-bounds tensor view) maps to one of these variants; nothing in this module tree panics
// on untrusted input.

use std::path::PathBuf;

/// Error returned by [`super::read_state_dict`] and [`super::write_state_dict`].
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
    /// The file is a readable zip (or other file) but not a torch.save zip checkpoint.
    #[error("not a torch.save zip checkpoint: {0}")]
    NotTorchArchive(String),
    /// A record named by the pickle (e.g. `archive/data/3`) is missing from the zip.
    #[error("missing record {0} in archive")]
    MissingRecord(String),
    /// The pickle stream ended early or is structurally invalid.
    #[error("malformed pickle at byte {offset}: {msg}")]
    Pickle { offset: usize, msg: String },
    /// The pickle stream uses an opcode this reader does not implement.
    #[error("unsupported pickle opcode 0x{opcode:02x} at byte {offset}")]
    UnknownOpcode { opcode: u8, offset: usize },
    /// A storage class (e.g. `torch.ComplexFloatStorage`) whose dtype is not supported.
    #[error("unsupported tensor dtype/storage type {0}")]
    UnsupportedDtype(String),
    /// The unpickled object is not a flat `name -> tensor` dict, or uses an unsupported feature.
    #[error("unsupported checkpoint content: {0}")]
    Unsupported(String),
    /// A tensor's size/stride/offset does not fit its storage, or its metadata is invalid.
    #[error("invalid tensor {name:?}: {msg}")]
    BadTensor { name: String, msg: String },
    /// The caller passed tensors that cannot be written (data length mismatch, duplicate names).
    #[error("invalid tensor for writing: {0}")]
    InvalidInput(String),
}

impl PtError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        PtError::Io { path: path.into(), source }
    }

    pub(crate) fn bad_tensor(name: &str, msg: impl Into<String>) -> Self {
        PtError::BadTensor { name: name.to_string(), msg: msg.into() }
    }
}
