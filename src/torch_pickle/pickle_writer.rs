// Emits the protocol-2 pickle torch.save would write for a flat `dict[str, Tensor]`:
// per tensor `_rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict())`, the storage
// being the persistent id `('storage', torch.XStorage, '<key>', 'cpu', numel)`. Uses only opcodes
// accepted by torch's `weights_only=True` unpickler.

use std::collections::HashMap;

use super::dtype::DType;

/// One tensor as seen by the pickle: its storage record key and contiguous geometry.
pub struct PickledTensor<'a> {
    pub name: &'a str,
    pub dtype: DType,
    pub shape: &'a [usize],
    /// Record name under `<prefix>/data/`.
    pub key: &'a str,
}

/// Pickle bytes for `{name: tensor, ...}` in the given order.
pub fn state_dict_pickle(tensors: &[PickledTensor<'_>]) -> Vec<u8> {
    let mut w = Writer { out: Vec::new(), memo: HashMap::new(), next_memo: 0 };
    w.out.extend_from_slice(&[PROTO, 2, EMPTY_DICT]);
    w.put();
    // Python batches SETITEMS by 1000; an empty dict needs no SETITEMS at all.
    for chunk in tensors.chunks(1000) {
        w.out.push(MARK);
        for t in chunk {
            w.unicode(t.name);
            w.global("torch._utils", "_rebuild_tensor_v2");
            w.out.push(MARK);
            // persistent id tuple
            w.out.push(MARK);
            w.memo_unicode("storage");
            w.global("torch", t.dtype.storage_class());
            w.unicode(t.key);
            w.memo_unicode("cpu");
            let numel: usize = t.shape.iter().product();
            w.int(numel as u64);
            w.out.push(TUPLE);
            w.out.push(BINPERSID);
            w.int(0); // storage offset
            w.int_tuple(t.shape.iter().map(|&d| d as u64));
            w.int_tuple(contiguous_strides(t.shape).into_iter());
            w.out.push(NEWFALSE); // requires_grad
            w.global("collections", "OrderedDict"); // backward_hooks = OrderedDict()
            w.out.extend_from_slice(&[EMPTY_TUPLE, REDUCE]);
            w.out.push(TUPLE);
            w.out.push(REDUCE);
        }
        w.out.push(SETITEMS);
    }
    w.out.push(STOP);
    w.out
}

/// Row-major strides in elements; like torch, a zero-sized dim counts as 1 for the dims before it.
pub fn contiguous_strides(shape: &[usize]) -> Vec<u64> {
    let mut strides = vec![0u64; shape.len()];
    let mut acc = 1u64;
    for (s, &d) in strides.iter_mut().zip(shape).rev() {
        *s = acc;
        acc = acc.saturating_mul(d.max(1) as u64);
    }
    strides
}

const PROTO: u8 = 0x80;
const STOP: u8 = b'.';
const MARK: u8 = b'(';
const EMPTY_DICT: u8 = b'}';
const EMPTY_TUPLE: u8 = b')';
const TUPLE: u8 = b't';
const TUPLE1: u8 = 0x85;
const SETITEMS: u8 = b'u';
const GLOBAL: u8 = b'c';
const REDUCE: u8 = b'R';
const BINPERSID: u8 = b'Q';
const NEWFALSE: u8 = 0x89;
const BINUNICODE: u8 = b'X';
const BININT: u8 = b'J';
const BININT1: u8 = b'K';
const BININT2: u8 = b'M';
const LONG1: u8 = 0x8a;
const BINPUT: u8 = b'q';
const LONG_BINPUT: u8 = b'r';
const BINGET: u8 = b'h';
const LONG_BINGET: u8 = b'j';

struct Writer {
    out: Vec<u8>,
    /// Memoized globals and constant strings -> memo index.
    memo: HashMap<String, u32>,
    next_memo: u32,
}

impl Writer {
    /// Stores the top of the stack in the next memo slot and returns that slot.
    fn put(&mut self) -> u32 {
        let idx = self.next_memo;
        self.next_memo += 1;
        if let Ok(small) = u8::try_from(idx) {
            self.out.extend_from_slice(&[BINPUT, small]);
        } else {
            self.out.push(LONG_BINPUT);
            self.out.extend_from_slice(&idx.to_le_bytes());
        }
        idx
    }

    fn get(&mut self, idx: u32) {
        if let Ok(small) = u8::try_from(idx) {
            self.out.extend_from_slice(&[BINGET, small]);
        } else {
            self.out.push(LONG_BINGET);
            self.out.extend_from_slice(&idx.to_le_bytes());
        }
    }

    fn memoized(&mut self, key: String, emit: impl FnOnce(&mut Self)) {
        if let Some(&idx) = self.memo.get(&key) {
            self.get(idx);
        } else {
            emit(self);
            let idx = self.put();
            self.memo.insert(key, idx);
        }
    }

    fn global(&mut self, module: &str, name: &str) {
        self.memoized(format!("g:{module}\n{name}"), |w| {
            w.out.push(GLOBAL);
            w.out.extend_from_slice(module.as_bytes());
            w.out.push(b'\n');
            w.out.extend_from_slice(name.as_bytes());
            w.out.push(b'\n');
        });
    }

    fn memo_unicode(&mut self, s: &str) {
        self.memoized(format!("s:{s}"), |w| w.unicode(s));
    }

    fn unicode(&mut self, s: &str) {
        self.out.push(BINUNICODE);
        self.out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.out.extend_from_slice(s.as_bytes());
    }

    fn int(&mut self, v: u64) {
        if let Ok(b) = u8::try_from(v) {
            self.out.extend_from_slice(&[BININT1, b]);
        } else if let Ok(h) = u16::try_from(v) {
            self.out.push(BININT2);
            self.out.extend_from_slice(&h.to_le_bytes());
        } else if let Ok(i) = i32::try_from(v) {
            self.out.push(BININT);
            self.out.extend_from_slice(&i.to_le_bytes());
        } else {
            // Minimal little-endian two's complement: keep a 0x00 byte if the top bit is set.
            let bytes = v.to_le_bytes();
            let mut n = 8 - (v.leading_zeros() as usize / 8);
            if bytes[n - 1] & 0x80 != 0 {
                n += 1;
            }
            self.out.extend_from_slice(&[LONG1, n as u8]);
            self.out.extend_from_slice(&bytes[..n.min(8)]);
            if n > 8 {
                self.out.push(0);
            }
        }
    }

    fn int_tuple(&mut self, items: impl ExactSizeIterator<Item = u64>) {
        let n = items.len();
        if n == 0 {
            self.out.push(EMPTY_TUPLE);
            return;
        }
        if n > 3 {
            self.out.push(MARK);
        }
        for v in items {
            self.int(v);
        }
        self.out.push(if n > 3 { TUPLE } else { TUPLE1 + (n as u8 - 1) });
    }
}

#[cfg(test)]
mod tests {
    use super::super::pickle_reader::unpickle;
    use super::super::value::Value;
    use super::*;

    #[test]
    fn ints_round_trip_through_reader() {
        let values = [0u64, 255, 256, 65535, 65536, i32::MAX as u64, 1 << 31, 1 << 40, u64::MAX >> 1, u64::MAX];
        for v in values {
            let mut w = Writer { out: vec![PROTO, 2], memo: HashMap::new(), next_memo: 0 };
            w.int(v);
            w.out.push(STOP);
            match unpickle(&w.out) {
                Ok(Value::Int(got)) => assert_eq!(got as u64, v, "value {v}"),
                // u64::MAX does not fit the reader's i64; that is the only allowed failure.
                Err(_) if v > i64::MAX as u64 => {}
                other => panic!("value {v}: {other:?}"),
            }
        }
    }

    #[test]
    fn strides() {
        assert_eq!(contiguous_strides(&[2, 3, 4]), vec![12, 4, 1]);
        assert_eq!(contiguous_strides(&[]), Vec::<u64>::new());
        assert_eq!(contiguous_strides(&[0, 3]), vec![3, 1]);
        assert_eq!(contiguous_strides(&[3, 0, 2]), vec![2, 2, 1]);
    }
}
