// Turns an unpickled object into named tensor views and materialises each view's bytes.
// The root must be a flat dict / OrderedDict of `str -> tensor`; views may be non-contiguous,
// broadcast (stride 0) or start at a storage offset, and are copied out to contiguous row-major
// data after checking that every element they address lies inside the storage record.

use std::collections::HashSet;

use super::error::PtError;
use super::value::{TensorRef, Value};

/// Extracts `(name, view)` pairs in pickle order from the root object of a state_dict pickle.
pub fn tensor_entries(root: &Value) -> Result<Vec<(String, TensorRef)>, PtError> {
    let Value::Dict(dict) = root else {
        return Err(PtError::Unsupported(format!("top-level object is a {}, expected a dict of tensors", root.kind())));
    };
    let dict = dict.borrow();
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(dict.0.len());
    for (k, v) in &dict.0 {
        let Value::Str(name) = k else {
            return Err(PtError::Unsupported(format!("dict key is a {}, expected str", k.kind())));
        };
        let Value::Tensor(t) = v else {
            return Err(PtError::Unsupported(format!(
                "entry {name:?} is a {}, not a tensor (only flat name -> tensor dicts are supported)",
                v.kind()
            )));
        };
        if !seen.insert(name.as_str()) {
            return Err(PtError::Unsupported(format!("duplicate key {name:?}")));
        }
        out.push((name.clone(), (**t).clone()));
    }
    Ok(out)
}

/// Validated geometry of a view, in elements.
pub struct Geometry {
    pub numel: usize,
    /// Whether the view is row-major contiguous (ignoring size-1 dims) from `offset`.
    pub contiguous: bool,
}

/// Checks the view against a storage record of `record_len` bytes.
pub fn check_view(name: &str, t: &TensorRef, record_len: usize) -> Result<Geometry, PtError> {
    let es = t.storage.dtype.size() as u64;
    let overflow = || PtError::bad_tensor(name, "size/stride arithmetic overflows");
    let declared_bytes = t.storage.numel.checked_mul(es).ok_or_else(overflow)?;
    if declared_bytes > record_len as u64 {
        return Err(PtError::bad_tensor(
            name,
            format!(
                "storage {} declares {} elements ({declared_bytes} bytes) but its record has {record_len} bytes",
                t.storage.key, t.storage.numel
            ),
        ));
    }
    let mut numel = 1u64;
    for &d in &t.shape {
        numel = numel.checked_mul(d).ok_or_else(overflow)?;
    }
    let numel_usize = usize::try_from(numel).map_err(|_| overflow())?;
    numel.checked_mul(es).and_then(|b| usize::try_from(b).ok()).ok_or_else(overflow)?;
    if numel == 0 {
        return Ok(Geometry { numel: 0, contiguous: true });
    }
    let mut last = t.offset;
    for (&d, &s) in t.shape.iter().zip(&t.stride) {
        last = (d - 1).checked_mul(s).and_then(|x| x.checked_add(last)).ok_or_else(overflow)?;
    }
    if last >= t.storage.numel {
        return Err(PtError::bad_tensor(
            name,
            format!(
                "view (offset {}, size {:?}, stride {:?}) reaches element {last} of a {}-element storage",
                t.offset, t.shape, t.stride, t.storage.numel
            ),
        ));
    }
    let mut expected = 1u64;
    let mut contiguous = true;
    for (&d, &s) in t.shape.iter().zip(&t.stride).rev() {
        if d != 1 {
            if s != expected {
                contiguous = false;
                break;
            }
            expected *= d;
        }
    }
    Ok(Geometry { numel: numel_usize, contiguous })
}

/// Copies the view's elements out of `record` into contiguous row-major bytes.
/// `check_view` must have succeeded for the same view and record.
pub fn materialize(t: &TensorRef, geom: &Geometry, record: &[u8]) -> Vec<u8> {
    let es = t.storage.dtype.size();
    let nbytes = geom.numel * es;
    // All indices below are bounded by check_view (last element < storage numel <= record len).
    let offset = t.offset as usize;
    if geom.contiguous {
        return record[offset * es..offset * es + nbytes].to_vec();
    }
    let shape: Vec<usize> = t.shape.iter().map(|&d| d as usize).collect();
    let stride: Vec<usize> = t.stride.iter().map(|&s| s as usize).collect();
    let mut out = Vec::with_capacity(nbytes);
    let ndim = shape.len();
    // ndim >= 1 here: a 0-d view is always contiguous.
    let inner = shape[ndim - 1];
    let inner_stride = stride[ndim - 1];
    let mut index = vec![0usize; ndim - 1];
    loop {
        let base: usize = offset + index.iter().zip(&stride).map(|(&i, &s)| i * s).sum::<usize>();
        if inner_stride == 1 {
            out.extend_from_slice(&record[base * es..(base + inner) * es]);
        } else {
            for j in 0..inner {
                let at = (base + j * inner_stride) * es;
                out.extend_from_slice(&record[at..at + es]);
            }
        }
        // Odometer increment over the outer dims.
        let mut dim = ndim - 1;
        loop {
            if dim == 0 {
                return out;
            }
            dim -= 1;
            index[dim] += 1;
            if index[dim] < shape[dim] {
                break;
            }
            index[dim] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::dtype::DType;
    use super::super::value::StorageRef;
    use super::*;

    fn view(numel: u64, offset: u64, shape: &[u64], stride: &[u64]) -> TensorRef {
        TensorRef {
            storage: StorageRef { dtype: DType::U8, key: "0".into(), location: "cpu".into(), numel },
            offset,
            shape: shape.to_vec(),
            stride: stride.to_vec(),
        }
    }

    #[test]
    fn transpose_and_offset() {
        let record: Vec<u8> = (0..12).collect();
        // 3x4 matrix transposed -> 4x3 with strides (1, 4).
        let t = view(12, 0, &[4, 3], &[1, 4]);
        let g = check_view("t", &t, 12).unwrap();
        assert!(!g.contiguous);
        assert_eq!(materialize(&t, &g, &record), vec![0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]);
        // Column slice [:, 1:3] with offset 1.
        let t = view(12, 1, &[3, 2], &[4, 1]);
        let g = check_view("t", &t, 12).unwrap();
        assert_eq!(materialize(&t, &g, &record), vec![1, 2, 5, 6, 9, 10]);
        // Broadcast row.
        let t = view(12, 2, &[2, 3], &[0, 1]);
        let g = check_view("t", &t, 12).unwrap();
        assert_eq!(materialize(&t, &g, &record), vec![2, 3, 4, 2, 3, 4]);
        // 0-d at offset 7.
        let t = view(12, 7, &[], &[]);
        let g = check_view("t", &t, 12).unwrap();
        assert_eq!(materialize(&t, &g, &record), vec![7]);
    }

    #[test]
    fn out_of_bounds_views_are_errors() {
        assert!(check_view("t", &view(12, 1, &[12], &[1]), 12).is_err());
        assert!(check_view("t", &view(12, 0, &[4, 3], &[4, 1]), 12).is_err());
        assert!(check_view("t", &view(13, 0, &[1], &[1]), 12).is_err());
        assert!(check_view("t", &view(12, u64::MAX, &[2], &[1]), 12).is_err());
        assert!(check_view("t", &view(12, 0, &[u64::MAX, 2], &[1, 1]), 12).is_err());
        // Empty views never touch the storage.
        assert!(check_view("t", &view(0, 5, &[0, 3], &[3, 1]), 0).is_ok());
    }
}
