//! A non-executing unpickler for the two pickles nanochat reads: the reference's `tokenizer.pkl`
//! (src/tokenizer/tiktoken_pickle.rs) and the `data.pkl` of a `torch.save` file
//! (src/checkpoint/torch_pt.rs; libtorch's own unpickler cannot read `model.state_dict()`, see there).
//! Protocol 2 plus the protocol 3/4 opcodes a newer Python emits. Globals are never imported:
//! `collections.OrderedDict` becomes a dict and `_codecs.encode` bytes, the result of calling any
//! other global is kept as an opaque `Value::Object` (with the state a BUILD gave it), and a
//! persistent id (BINPERSID) as `Value::PersistentId`; their readers interpret them.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Why a pickle could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PickleError {
    /// The stream ended early or is structurally invalid.
    #[error("malformed pickle at byte {offset}: {msg}")]
    Malformed { offset: usize, msg: String },
    /// An opcode this reader does not implement.
    #[error("unsupported pickle opcode 0x{opcode:02x} at byte {offset}")]
    UnknownOpcode { opcode: u8, offset: usize },
}

/// Elements of a tuple, list or call-argument tuple. Dropped iteratively (see [`Items::drop`]).
#[derive(Debug, Default)]
pub struct Items(pub Vec<Value>);

/// Key/value pairs of a dict in insertion order (duplicates are not merged here).
#[derive(Debug, Default)]
pub struct Pairs(pub Vec<(Value, Value)>);

/// Shared, mutable dict.
pub type DictRef = Rc<RefCell<Pairs>>;
/// Shared, mutable list.
pub type ListRef = Rc<RefCell<Items>>;

/// An unpickled value. Cloning is shallow (containers are reference counted).
#[derive(Debug, Clone)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Rc<Items>),
    List(ListRef),
    Dict(DictRef),
    /// A `module.name` reference pushed by GLOBAL / STACK_GLOBAL.
    Global {
        module: String,
        name: String,
    },
    /// The persistent id a BINPERSID popped (one item; torch.save's are storage tuples).
    PersistentId(Rc<Items>),
    /// The result of calling a global the reader does not interpret (kept opaque, never executed),
    /// with the state a BUILD gave it (one item), e.g. a pickled `tiktoken.core.Encoding`'s dict.
    Object {
        module: String,
        name: String,
        args: Rc<Items>,
        state: Option<Rc<Items>>,
    },
}

impl Value {
    /// Short type description for error messages.
    pub fn kind(&self) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(_) => "bool".into(),
            Value::Int(_) => "int".into(),
            Value::Float(_) => "float".into(),
            Value::Str(_) => "str".into(),
            Value::Bytes(_) => "bytes".into(),
            Value::Tuple(_) => "tuple".into(),
            Value::List(_) => "list".into(),
            Value::Dict(_) => "dict".into(),
            Value::Global { module, name } => format!("global {module}.{name}"),
            Value::PersistentId(_) => "persistent id".into(),
            Value::Object { module, name, .. } => format!("object {module}.{name}(...)"),
        }
    }

    pub fn tuple(items: Vec<Value>) -> Value {
        Value::Tuple(Rc::new(Items(items)))
    }

    pub fn new_dict(pairs: Vec<(Value, Value)>) -> Value {
        Value::Dict(Rc::new(RefCell::new(Pairs(pairs))))
    }

    pub fn new_list(items: Vec<Value>) -> Value {
        Value::List(Rc::new(RefCell::new(Items(items))))
    }
}

// Dropping a deeply nested value with the compiler's recursive drop glue can overflow the stack
// on a hostile pickle (e.g. a million nested 1-tuples). These Drop impls flatten the tree into a
// work list instead; containers still shared elsewhere are only decremented.
impl Drop for Items {
    fn drop(&mut self) {
        drop_iteratively(std::mem::take(&mut self.0));
    }
}

impl Drop for Pairs {
    fn drop(&mut self) {
        let mut work = Vec::with_capacity(self.0.len() * 2);
        for (k, v) in self.0.drain(..) {
            work.push(k);
            work.push(v);
        }
        drop_iteratively(work);
    }
}

fn drop_iteratively(mut work: Vec<Value>) {
    while let Some(value) = work.pop() {
        match value {
            Value::Tuple(rc) | Value::PersistentId(rc) => {
                if let Ok(mut items) = Rc::try_unwrap(rc) {
                    work.append(&mut items.0);
                }
            }
            Value::Object { args, state, .. } => {
                for rc in std::iter::once(args).chain(state) {
                    if let Ok(mut items) = Rc::try_unwrap(rc) {
                        work.append(&mut items.0);
                    }
                }
            }
            Value::List(rc) => {
                if let Ok(cell) = Rc::try_unwrap(rc) {
                    work.append(&mut cell.into_inner().0);
                }
            }
            Value::Dict(rc) => {
                if let Ok(cell) = Rc::try_unwrap(rc) {
                    for (k, v) in cell.into_inner().0.drain(..) {
                        work.push(k);
                        work.push(v);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Parses a complete pickle stream and returns the object left by STOP.
pub fn unpickle(data: &[u8]) -> Result<Value, PickleError> {
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
    fn err(&self, msg: impl Into<String>) -> PickleError {
        PickleError::Malformed { offset: self.op_pos, msg: msg.into() }
    }

    fn take(&mut self, n: usize) -> Result<&[u8], PickleError> {
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

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], PickleError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take_array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, PickleError> {
        Ok(u32::from_le_bytes(self.take_array()?))
    }

    fn len_u32(&mut self) -> Result<usize, PickleError> {
        usize::try_from(self.u32()?).map_err(|_| self.err("length does not fit usize"))
    }

    fn len_u64(&mut self) -> Result<usize, PickleError> {
        let n = u64::from_le_bytes(self.take_array()?);
        usize::try_from(n).map_err(|_| self.err("length does not fit usize"))
    }

    /// Reads up to and excluding the next `\n` (text-mode operands such as GLOBAL's).
    fn line(&mut self) -> Result<String, PickleError> {
        let rest = &self.data[self.pos..];
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            return Err(self.err("truncated: missing newline"));
        };
        let text = std::str::from_utf8(&rest[..nl]).map_err(|_| self.err("non-UTF-8 text operand"))?.to_string();
        self.pos += nl + 1;
        Ok(text)
    }

    fn utf8(&mut self, n: usize) -> Result<String, PickleError> {
        let bytes = self.take(n)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_string()),
            Err(_) => Err(self.err("invalid UTF-8 in string")),
        }
    }

    fn push(&mut self, v: Value) {
        self.stack.push(v);
    }

    fn pop(&mut self) -> Result<Value, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.err("stack underflow"));
        }
        self.stack.pop().ok_or_else(|| self.err("stack underflow"))
    }

    fn top_mut(&mut self) -> Result<&mut Value, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.err("stack underflow"));
        }
        let op_pos = self.op_pos;
        self.stack.last_mut().ok_or(PickleError::Malformed { offset: op_pos, msg: "stack underflow".into() })
    }

    /// Pops everything above the most recent MARK (and the mark itself).
    fn pop_mark(&mut self) -> Result<Vec<Value>, PickleError> {
        let Some(at) = self.marks.pop() else {
            return Err(self.err("no MARK on the stack"));
        };
        Ok(self.stack.split_off(at))
    }

    fn memo_get(&self, idx: u64) -> Result<Value, PickleError> {
        self.memo.get(&idx).cloned().ok_or_else(|| self.err(format!("memo key {idx} not defined")))
    }

    fn memo_put(&mut self, idx: u64) -> Result<(), PickleError> {
        let v = self.top_any()?.clone();
        self.memo.insert(idx, v);
        Ok(())
    }

    /// Top of the current frame (above the last MARK), like Python's `stack[-1]`.
    fn top_any(&mut self) -> Result<&Value, PickleError> {
        Ok(&*self.top_mut()?)
    }

    fn run(mut self) -> Result<Value, PickleError> {
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
                // OrderedDict) it is dropped.
                b'b' => {
                    let state = self.pop()?;
                    if let Value::Object { state: slot @ None, .. } = self.top_mut()? {
                        *slot = Some(Rc::new(Items(vec![state])));
                    }
                }
                // BINPERSID
                b'Q' => {
                    let pid = self.pop()?;
                    self.push(Value::PersistentId(Rc::new(Items(vec![pid]))));
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
                opcode => return Err(PickleError::UnknownOpcode { opcode, offset: self.op_pos }),
            }
        }
    }

    /// Little-endian two's-complement integer of `n` bytes (LONG1/LONG4); must fit in i64.
    fn long(&mut self, n: usize) -> Result<Value, PickleError> {
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

    fn pairs(&self, items: Vec<Value>) -> Result<Vec<(Value, Value)>, PickleError> {
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

    fn set_items(&mut self, pairs: Vec<(Value, Value)>) -> Result<(), PickleError> {
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

    fn append(&mut self, items: Vec<Value>) -> Result<(), PickleError> {
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

    /// REDUCE/NEWOBJ: `OrderedDict(...)` and `_codecs.encode(...)` are evaluated, any other call is
    /// kept opaque.
    fn call(&self, callable: Value, args: Value) -> Result<Value, PickleError> {
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

    fn pairs_from_seq(&self, seq: &[Value]) -> Result<Value, PickleError> {
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
        assert!(matches!(unpickle(&p), Err(PickleError::Malformed { .. })));
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
        // The same through a million nested persistent ids (BINPERSID).
        let mut p = vec![0x80, 2, b')'];
        p.extend(std::iter::repeat_n(b'Q', 1_000_000));
        p.push(b'.');
        assert!(matches!(unpickle(&p), Ok(Value::PersistentId(_))));
    }

    #[test]
    fn errors_not_panics() {
        assert!(matches!(unpickle(b""), Err(PickleError::Malformed { .. })));
        assert!(matches!(unpickle(b"\x80\x02"), Err(PickleError::Malformed { .. })));
        assert!(matches!(unpickle(b"\x80\x02\xff."), Err(PickleError::UnknownOpcode { opcode: 0xff, offset: 2 })));
        assert!(matches!(unpickle(b"\x80\x02."), Err(PickleError::Malformed { .. })));
        assert!(matches!(unpickle(b"\x80\x02h\x05."), Err(PickleError::Malformed { .. })));
        assert!(matches!(unpickle(b"\x80\x02X\xff\xff\xff\xffab."), Err(PickleError::Malformed { .. })));
        assert!(matches!(unpickle(b"\x80\x02K\x01K\x02s."), Err(PickleError::Malformed { .. })));
        assert!(matches!(unpickle(b"\x80\x02(K\x01u."), Err(PickleError::Malformed { .. })));
    }
}
