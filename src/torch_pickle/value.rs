// The object model produced by the unpickler: plain Python values plus the few torch objects a
// state_dict contains (globals, storages from persistent ids, rebuilt tensor views).
// Dicts and lists are shared (Rc<RefCell>) so memo references see later SETITEMS/APPENDS like
// Python's pickle does.

use std::cell::RefCell;
use std::rc::Rc;

use super::dtype::DType;

/// A storage referenced through a persistent id `('storage', torch.XStorage, key, location, numel)`.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageRef {
    pub dtype: DType,
    /// Record name below `<archive>/data/`.
    pub key: String,
    pub location: String,
    /// Declared number of elements of the storage.
    pub numel: u64,
}

/// A tensor view rebuilt by `torch._utils._rebuild_tensor_v2`, not yet materialised.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRef {
    pub storage: StorageRef,
    /// Offset into the storage, in elements.
    pub offset: u64,
    pub shape: Vec<u64>,
    /// Strides in elements.
    pub stride: Vec<u64>,
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
    Storage(StorageRef),
    Tensor(Box<TensorRef>),
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
            Value::Storage(_) => "storage".into(),
            Value::Tensor(_) => "tensor".into(),
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
            Value::Tuple(rc) => {
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
