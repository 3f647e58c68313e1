// Element types and the plain tensor record exchanged with callers.
// Maps each dtype to its element size and to the legacy typed-storage class name that torch.save
// puts in the pickle (`torch.FloatStorage`, `torch.BFloat16Storage`, ...).

/// Element type of a tensor. Data is always little-endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    BF16,
    F16,
    F64,
    I64,
    I32,
    U8,
    Bool,
}

impl DType {
    /// All supported dtypes.
    pub const ALL: [DType; 8] =
        [DType::F32, DType::BF16, DType::F16, DType::F64, DType::I64, DType::I32, DType::U8, DType::Bool];

    /// Size of one element in bytes.
    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::BF16 | DType::F16 => 2,
            DType::U8 | DType::Bool => 1,
        }
    }

    /// Class name (in module `torch`) of the legacy typed storage torch.save pickles for this dtype.
    pub fn storage_class(self) -> &'static str {
        match self {
            DType::F32 => "FloatStorage",
            DType::BF16 => "BFloat16Storage",
            DType::F16 => "HalfStorage",
            DType::F64 => "DoubleStorage",
            DType::I64 => "LongStorage",
            DType::I32 => "IntStorage",
            DType::U8 => "ByteStorage",
            DType::Bool => "BoolStorage",
        }
    }

    /// Inverse of [`DType::storage_class`].
    pub fn from_storage_class(name: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.storage_class() == name)
    }

    /// The torch dtype name, e.g. `float32`, `bfloat16`.
    pub fn torch_name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::BF16 => "bfloat16",
            DType::F16 => "float16",
            DType::F64 => "float64",
            DType::I64 => "int64",
            DType::I32 => "int32",
            DType::U8 => "uint8",
            DType::Bool => "bool",
        }
    }

    /// Inverse of [`DType::torch_name`].
    pub fn from_torch_name(name: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.torch_name() == name)
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.torch_name())
    }
}

/// One named tensor with contiguous, row-major, little-endian data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawTensor {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl RawTensor {
    /// Number of elements (product of the shape; 1 for a 0-d tensor).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Byte length `data` must have (`numel * dtype.size()`), or `None` if that overflows.
    pub fn expected_bytes(&self) -> Option<usize> {
        self.shape.iter().try_fold(self.dtype.size(), |acc, &d| acc.checked_mul(d))
    }
}
