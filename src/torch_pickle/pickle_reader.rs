// Minimal, non-executing unpickler for the pickles torch.save writes (protocol 2, plus the few
// protocol 3/4 opcodes a newer Python may emit). Globals are never imported: the handful torch
// uses for state_dicts (`collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`,
// `_rebuild_parameter`, `torch.Size`, `_codecs.encode`) are interpreted, anything else becomes an
// opaque `Value::Object`. Persistent ids `('storage', torch.XStorage, key, location, numel)`
// become `Value::Storage`.

use std::collections::HashMap;
use std::rc::Rc;

use super::dtype::DType;
use super::error::PtError;
use super::value::{Items, StorageRef, TensorRef, Value};

/// Parses a complete pickle stream and returns the object left by STOP.
pub fn unpickle(data: &[u8]) -> Result<Value, PtError> {
    Unpickler { data, pos: 0, op_pos: 0, stack: Vec::new(), marks: Vec::new(), memo: HashMap::new() }.run()
}

struct Unpickler<'a> {
    data: &'a [u8],
    pos: usize,
    /// Offset of the opcode being executed (for error messages).
    op_pos: usize,
    stack: Vec<Value>,
    /// Stack lengths at each MARK.
    marks: Vec<usize>,
    memo: HashMap<u64, Value>,
}

impl Unpickler<'_> {
    fn err(&self, msg: impl Into<String>) -> PtError {
        PtError::Pickle { offset: self.op_pos, msg: msg.into() }
    }

    fn take(&mut self, n: usize) -> Result<&[u8], PtError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        match end {
            Some(end) => {
                let bytes = &self.data[self.pos..end];
                self.pos = end;
                Ok(bytes)
            }
            None => Err(self.err(format!("truncated: need {n} bytes, {} left", self.data.len() - self.pos))),
        }
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], PtError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, PtError> {
        Ok(self.take_array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, PtError> {
        Ok(u32::from_le_bytes(self.take_array()?))
    }

    fn len_u32(&mut self) -> Result<usize, PtError> {
        usize::try_from(self.u32()?).map_err(|_| self.err("length does not fit usize"))
    }

    fn len_u64(&mut self) -> Result<usize, PtError> {
        let n = u64::from_le_bytes(self.take_array()?);
        usize::try_from(n).map_err(|_| self.err("length does not fit usize"))
    }

    /// Reads up to and excluding the next `\n` (text-mode operands such as GLOBAL's).
    fn line(&mut self) -> Result<String, PtError> {
        let rest = &self.data[self.pos..];
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            return Err(self.err("truncated: missing newline"));
        };
        let text = std::str::from_utf8(&rest[..nl]).map_err(|_| self.err("non-UTF-8 text operand"))?.to_string();
        self.pos += nl + 1;
        Ok(text)
    }

    fn utf8(&mut self, n: usize) -> Result<String, PtError> {
        let bytes = self.take(n)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_string()),
            Err(_) => Err(self.err("invalid UTF-8 in string")),
        }
    }

    fn push(&mut self, v: Value) {
        self.stack.push(v);
    }

    fn pop(&mut self) -> Result<Value, PtError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.err("stack underflow"));
        }
        self.stack.pop().ok_or_else(|| self.err("stack underflow"))
    }

    fn top_mut(&mut self) -> Result<&mut Value, PtError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.err("stack underflow"));
        }
        let op_pos = self.op_pos;
        self.stack.last_mut().ok_or(PtError::Pickle { offset: op_pos, msg: "stack underflow".into() })
    }

    /// Pops everything above the most recent MARK (and the mark itself).
    fn pop_mark(&mut self) -> Result<Vec<Value>, PtError> {
        let Some(at) = self.marks.pop() else {
            return Err(self.err("no MARK on the stack"));
        };
        Ok(self.stack.split_off(at))
    }

    fn memo_get(&self, idx: u64) -> Result<Value, PtError> {
        self.memo.get(&idx).cloned().ok_or_else(|| self.err(format!("memo key {idx} not defined")))
    }

    fn memo_put(&mut self, idx: u64) -> Result<(), PtError> {
        let v = self.top_any()?.clone();
        self.memo.insert(idx, v);
        Ok(())
    }

    /// Top of the current frame (above the last MARK), like Python's `stack[-1]`.
    fn top_any(&mut self) -> Result<&Value, PtError> {
        Ok(&*self.top_mut()?)
    }

    fn run(mut self) -> Result<Value, PtError> {
        loop {
            self.op_pos = self.pos;
            let op = self.u8().map_err(|_| self.err("truncated: stream ended without STOP"))?;
            match op {
                // PROTO
                0x80 => {
                    let proto = self.u8()?;
                    if proto > 5 {
                        return Err(self.err(format!("unsupported pickle protocol {proto}")));
                    }
                }
                // FRAME (protocol 4): an 8-byte frame length we do not need.
                0x95 => {
                    self.take(8)?;
                }
                // STOP
                b'.' => {
                    let v = self.pop()?;
                    return Ok(v);
                }
                // MARK
                b'(' => self.marks.push(self.stack.len()),
                // POP
                b'0' => {
                    if self.stack.len() > self.marks.last().copied().unwrap_or(0) {
                        self.pop()?;
                    } else {
                        // Python's POP with an empty frame pops the mark.
                        self.pop_mark()?;
                    }
                }
                // POP_MARK
                b'1' => {
                    self.pop_mark()?;
                }
                // DUP
                b'2' => {
                    let v = self.top_any()?.clone();
                    self.push(v);
                }
                // NONE, NEWTRUE, NEWFALSE
                b'N' => self.push(Value::None),
                0x88 => self.push(Value::Bool(true)),
                0x89 => self.push(Value::Bool(false)),
                // BININT, BININT1, BININT2
                b'J' => {
                    let v = i32::from_le_bytes(self.take_array()?);
                    self.push(Value::Int(v.into()));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(v.into()));
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.take_array()?);
                    self.push(Value::Int(v.into()));
                }
                // LONG1, LONG4
                0x8a => {
                    let n = usize::from(self.u8()?);
                    let v = self.long(n)?;
                    self.push(v);
                }
                0x8b => {
                    let n = self.len_u32()?;
                    let v = self.long(n)?;
                    self.push(v);
                }
                // BINFLOAT (big-endian f64)
                b'G' => {
                    let v = f64::from_be_bytes(self.take_array()?);
                    self.push(Value::Float(v));
                }
                // BINUNICODE, SHORT_BINUNICODE, BINUNICODE8
                b'X' => {
                    let n = self.len_u32()?;
                    let s = self.utf8(n)?;
                    self.push(Value::Str(s));
                }
                0x8c => {
                    let n = usize::from(self.u8()?);
                    let s = self.utf8(n)?;
                    self.push(Value::Str(s));
                }
                0x8d => {
                    let n = self.len_u64()?;
                    let s = self.utf8(n)?;
                    self.push(Value::Str(s));
                }
                // BINSTRING, SHORT_BINSTRING (Python 2 str; torch's loader decodes them as ASCII)
                b'T' | b'U' => {
                    let n = if op == b'T' { self.len_u32()? } else { usize::from(self.u8()?) };
                    let s = self.utf8(n)?;
                    self.push(Value::Str(s));
                }
                // BINBYTES, SHORT_BINBYTES, BINBYTES8
                b'B' | b'C' | 0x8e => {
                    let n = match op {
                        b'B' => self.len_u32()?,
                        b'C' => usize::from(self.u8()?),
                        _ => self.len_u64()?,
                    };
                    let b = self.take(n)?.to_vec();
                    self.push(Value::Bytes(b));
                }
                // EMPTY_TUPLE, TUPLE1..3, TUPLE
                b')' => self.push(Value::tuple(Vec::new())),
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push(Value::tuple(items));
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Value::tuple(items));
                }
                // EMPTY_LIST, LIST, APPEND, APPENDS
                b']' => self.push(Value::new_list(Vec::new())),
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Value::new_list(items));
                }
                b'a' => {
                    let v = self.pop()?;
                    self.append(vec![v])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.append(items)?;
                }
                // EMPTY_DICT, DICT, SETITEM, SETITEMS
                b'}' => self.push(Value::new_dict(Vec::new())),
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    self.push(Value::new_dict(pairs));
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![(k, v)])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    self.set_items(pairs)?;
                }
                // GLOBAL, STACK_GLOBAL
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.push(Value::Global { module, name });
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(module), Value::Str(name)) => self.push(Value::Global { module, name }),
                        _ => return Err(self.err("STACK_GLOBAL needs two strings")),
                    }
                }
                // REDUCE, NEWOBJ
                b'R' | 0x81 => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = self.call(callable, args)?;
                    self.push(v);
                }
                // BUILD: sets object state. An opaque object keeps it (a pickled tiktoken Encoding
                // is all state); on anything else (e.g. the `_metadata` attribute of a state_dict's
                // OrderedDict) it carries no tensor data and is dropped.
                b'b' => {
                    let state = self.pop()?;
                    if let Value::Object { state: slot @ None, .. } = self.top_mut()? {
                        *slot = Some(Rc::new(Items(vec![state])));
                    }
                }
                // BINPERSID
                b'Q' => {
                    let pid = self.pop()?;
                    let v = self.persistent_load(pid)?;
                    self.push(v);
                }
                // BINPUT, LONG_BINPUT, MEMOIZE, PUT
                b'q' => {
                    let idx = self.u8()?.into();
                    self.memo_put(idx)?;
                }
                b'r' => {
                    let idx = self.u32()?.into();
                    self.memo_put(idx)?;
                }
                0x94 => {
                    let idx = self.memo.len() as u64;
                    self.memo_put(idx)?;
                }
                b'p' => {
                    let line = self.line()?;
                    let idx = line.trim().parse::<u64>().map_err(|_| self.err("bad PUT index"))?;
                    self.memo_put(idx)?;
                }
                // BINGET, LONG_BINGET, GET
                b'h' => {
                    let idx = self.u8()?.into();
                    let v = self.memo_get(idx)?;
                    self.push(v);
                }
                b'j' => {
                    let idx = self.u32()?.into();
                    let v = self.memo_get(idx)?;
                    self.push(v);
                }
                b'g' => {
                    let line = self.line()?;
                    let idx = line.trim().parse::<u64>().map_err(|_| self.err("bad GET index"))?;
                    let v = self.memo_get(idx)?;
                    self.push(v);
                }
                opcode => return Err(PtError::UnknownOpcode { opcode, offset: self.op_pos }),
            }
        }
    }

    /// Little-endian two's-complement integer of `n` bytes (LONG1/LONG4); must fit in i64.
    fn long(&mut self, n: usize) -> Result<Value, PtError> {
        let bytes = self.take(n)?;
        if n == 0 {
            return Ok(Value::Int(0));
        }
        if n > 8 {
            // Allow redundant sign-extension bytes beyond 8.
            let sign = if bytes[n - 1] & 0x80 != 0 { 0xff } else { 0x00 };
            if bytes[8..].iter().any(|&b| b != sign) || (bytes[7] & 0x80 != 0) != (sign == 0xff) {
                return Err(self.err("integer does not fit in 64 bits"));
            }
        }
        let negative = bytes[n - 1] & 0x80 != 0;
        let mut buf = if negative { [0xffu8; 8] } else { [0u8; 8] };
        let k = n.min(8);
        buf[..k].copy_from_slice(&bytes[..k]);
        Ok(Value::Int(i64::from_le_bytes(buf)))
    }

    fn pairs(&self, items: Vec<Value>) -> Result<Vec<(Value, Value)>, PtError> {
        if !items.len().is_multiple_of(2) {
            return Err(self.err("odd number of items for a dict"));
        }
        let mut pairs = Vec::with_capacity(items.len() / 2);
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            pairs.push((k, v));
        }
        Ok(pairs)
    }

    fn set_items(&mut self, pairs: Vec<(Value, Value)>) -> Result<(), PtError> {
        match self.top_mut()? {
            Value::Dict(d) => {
                d.borrow_mut().0.extend(pairs);
                Ok(())
            }
            other => {
                let kind = other.kind();
                Err(self.err(format!("SETITEM(S) on a {kind}")))
            }
        }
    }

    fn append(&mut self, items: Vec<Value>) -> Result<(), PtError> {
        match self.top_mut()? {
            Value::List(l) => {
                l.borrow_mut().0.extend(items);
                Ok(())
            }
            other => {
                let kind = other.kind();
                Err(self.err(format!("APPEND(S) on a {kind}")))
            }
        }
    }

    /// REDUCE/NEWOBJ: interprets the few callables torch uses, keeps others opaque.
    fn call(&self, callable: Value, args: Value) -> Result<Value, PtError> {
        let Value::Global { module, name } = callable else {
            return Err(self.err(format!("REDUCE on a {}, expected a global", callable.kind())));
        };
        let Value::Tuple(args) = args else {
            return Err(self.err(format!("REDUCE arguments are a {}, expected a tuple", args.kind())));
        };
        let a = &args.0;
        match (module.as_str(), name.as_str()) {
            ("collections", "OrderedDict") => match a.as_slice() {
                [] => Ok(Value::new_dict(Vec::new())),
                [Value::List(l)] => self.pairs_from_seq(&l.borrow().0),
                [Value::Tuple(t)] => self.pairs_from_seq(&t.0),
                _ => Err(self.err("unsupported OrderedDict(...) arguments")),
            },
            ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
                if a.len() < 4 {
                    return Err(self.err(format!("{name} called with {} arguments", a.len())));
                }
                let Value::Storage(storage) = &a[0] else {
                    return Err(self.err(format!("{name}: first argument is a {}, not a storage", a[0].kind())));
                };
                let offset = self.non_negative(&a[1], "storage offset")?;
                let shape = self.int_tuple(&a[2], "size")?;
                let stride = self.int_tuple(&a[3], "stride")?;
                if shape.len() != stride.len() {
                    return Err(self.err(format!("size has {} dims but stride has {}", shape.len(), stride.len())));
                }
                Ok(Value::Tensor(Box::new(TensorRef { storage: storage.clone(), offset, shape, stride })))
            }
            ("torch._utils", "_rebuild_parameter") | ("torch._utils", "_rebuild_parameter_with_state") => {
                match a.first() {
                    Some(t @ Value::Tensor(_)) => Ok(t.clone()),
                    _ => Err(self.err(format!("{name}: first argument is not a tensor"))),
                }
            }
            ("torch", "Size") => match a.as_slice() {
                [t @ Value::Tuple(_)] => Ok(t.clone()),
                _ => Err(self.err("unsupported torch.Size(...) arguments")),
            },
            ("_codecs", "encode") => match a.as_slice() {
                [Value::Str(s), Value::Str(enc)] if enc == "latin1" || enc == "latin-1" => {
                    let bytes: Option<Vec<u8>> = s.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect();
                    bytes.map(Value::Bytes).ok_or_else(|| self.err("non-latin1 character in bytes"))
                }
                _ => Err(self.err("unsupported _codecs.encode(...) arguments")),
            },
            _ => Ok(Value::Object { module, name, args: Rc::clone(&args), state: None }),
        }
    }

    fn pairs_from_seq(&self, seq: &[Value]) -> Result<Value, PtError> {
        let mut pairs = Vec::with_capacity(seq.len());
        for item in seq {
            match item {
                Value::Tuple(t) if t.0.len() == 2 => pairs.push((t.0[0].clone(), t.0[1].clone())),
                Value::List(l) if l.borrow().0.len() == 2 => {
                    let l = l.borrow();
                    pairs.push((l.0[0].clone(), l.0[1].clone()));
                }
                _ => return Err(self.err("OrderedDict item is not a pair")),
            }
        }
        Ok(Value::new_dict(pairs))
    }

    fn non_negative(&self, v: &Value, what: &str) -> Result<u64, PtError> {
        match v {
            Value::Int(i) => u64::try_from(*i).map_err(|_| self.err(format!("negative {what} {i}"))),
            other => Err(self.err(format!("{what} is a {}, expected int", other.kind()))),
        }
    }

    fn int_tuple(&self, v: &Value, what: &str) -> Result<Vec<u64>, PtError> {
        match v {
            Value::Tuple(t) => t.0.iter().map(|x| self.non_negative(x, what)).collect(),
            Value::List(l) => l.borrow().0.iter().map(|x| self.non_negative(x, what)).collect(),
            other => Err(self.err(format!("{what} is a {}, expected a tuple", other.kind()))),
        }
    }

    /// `('storage', torch.XStorage, key, location, numel)` -> `Value::Storage`.
    fn persistent_load(&self, pid: Value) -> Result<Value, PtError> {
        let Value::Tuple(t) = &pid else {
            return Err(self.err(format!("persistent id is a {}, expected a tuple", pid.kind())));
        };
        let items: &Items = t;
        match items.0.as_slice() {
            [Value::Str(tag), class, key, location, numel] if tag == "storage" => {
                let dtype = match class {
                    Value::Global { module, name } if module == "torch" => DType::from_storage_class(name)
                        .ok_or_else(|| PtError::UnsupportedDtype(format!("{module}.{name}")))?,
                    Value::Global { module, name } => {
                        return Err(PtError::UnsupportedDtype(format!("{module}.{name}")))
                    }
                    other => return Err(self.err(format!("storage type is a {}, expected a global", other.kind()))),
                };
                let key = match key {
                    Value::Str(s) => s.clone(),
                    Value::Int(i) => i.to_string(),
                    other => return Err(self.err(format!("storage key is a {}", other.kind()))),
                };
                if key.is_empty() || key.contains('/') || key.contains("..") {
                    return Err(self.err(format!("invalid storage key {key:?}")));
                }
                let location = match location {
                    Value::Str(s) => s.clone(),
                    _ => String::new(),
                };
                let numel = self.non_negative(numel, "storage numel")?;
                Ok(Value::Storage(StorageRef { dtype, key, location, numel }))
            }
            [Value::Str(tag), ..] => Err(PtError::Unsupported(format!("persistent id of type {tag:?}"))),
            _ => Err(self.err("malformed persistent id")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long1_values() {
        // PROTO 2, LONG1 with various widths, TUPLE of them, STOP.
        let mut p = vec![0x80, 2, b'('];
        for bytes in [&[][..], &[0xff][..], &[0x00, 0x80, 0x00][..], &[1, 0, 0, 0, 0, 0, 0, 0x80][..]] {
            p.push(0x8a);
            p.push(bytes.len() as u8);
            p.extend_from_slice(bytes);
        }
        p.extend_from_slice(b"t.");
        let Value::Tuple(t) = unpickle(&p).unwrap() else { panic!("not a tuple") };
        let ints: Vec<i64> = t.0.iter().map(|v| if let Value::Int(i) = v { *i } else { panic!() }).collect();
        assert_eq!(ints, vec![0, -1, 32768, i64::MIN + 1]);
    }

    #[test]
    fn long1_too_big_is_an_error() {
        let p = [0x80, 2, 0x8a, 9, 0, 0, 0, 0, 0, 0, 0, 0, 1, b'.'];
        assert!(matches!(unpickle(&p), Err(PtError::Pickle { .. })));
    }

    #[test]
    fn memo_shares_dicts() {
        // EMPTY_DICT BINPUT 0; MARK BINGET 0, 1, 2, SETITEM (mutates the memo copy), TUPLE;
        // BINGET 0, TUPLE2 -> ((d,), d): the original d must see the item.
        let p2 = b"\x80\x02}q\x00(h\x00K\x01K\x02stq\x01h\x00\x86.";
        let Value::Tuple(t) = unpickle(p2).unwrap() else { panic!() };
        let Value::Dict(d) = &t.0[1] else { panic!() };
        assert_eq!(d.borrow().0.len(), 1);
    }

    #[test]
    fn deep_nesting_does_not_overflow_the_stack() {
        let mut p = vec![0x80, 2, b')'];
        p.extend(std::iter::repeat_n(0x85u8, 1_000_000));
        p.push(b'.');
        assert!(matches!(unpickle(&p), Ok(Value::Tuple(_))));
    }

    #[test]
    fn errors_not_panics() {
        assert!(matches!(unpickle(b""), Err(PtError::Pickle { .. })));
        assert!(matches!(unpickle(b"\x80\x02"), Err(PtError::Pickle { .. })));
        assert!(matches!(unpickle(b"\x80\x02\xff."), Err(PtError::UnknownOpcode { opcode: 0xff, offset: 2 })));
        assert!(matches!(unpickle(b"\x80\x02."), Err(PtError::Pickle { .. })));
        assert!(matches!(unpickle(b"\x80\x02h\x05."), Err(PtError::Pickle { .. })));
        assert!(matches!(unpickle(b"\x80\x02X\xff\xff\xff\xffab."), Err(PtError::Pickle { .. })));
        assert!(matches!(unpickle(b"\x80\x02K\x01K\x02s."), Err(PtError::Pickle { .. })));
        assert!(matches!(unpickle(b"\x80\x02(K\x01u."), Err(PtError::Pickle { .. })));
    }
}
