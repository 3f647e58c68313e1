//! The chat engine's calculator tool (NANOCHAT.md §7, the reference's `use_calculator`, [A']): Python's
//! `str()` of the value of the text between `<|python_start|>` and `<|python_end|>`, computed in Rust with
//! CPython 3.11's semantics, never by running Python. The reference's filters: commas are removed; text made
//! only of `0123456789*+-/.() ` is evaluated unless it contains `**`; other text must use only ASCII letters,
//! digits, `'"()._` and space, contain none of the forbidden words (case-insensitively) and contain `.count(`,
//! and is evaluated with empty builtins. An exception, or the value `None`, gives no output.
//!
//! Subset — all that those characters can spell, less the list below: numbers by the tokenizer's rules (ints
//! of any size, `_` separators, `0x`/`0o`/`0b`, the leading-zero rule, floats `1.5` `.5` `5.` `1e5`, the
//! 4300-digit limit on int literals, `1if`), strings (both quotes, triple quotes, `r`/`u`/`f` prefixes,
//! implicit concatenation), `...`, `True`/`False`/`None`, names (a `NameError`); unary `+`/`-`, `*` `/` `//`
//! `+` `-`, `not`, `and`, `or`, `in`, `not in`, `x if c else y`; attributes, and calls with at most one
//! argument; values int, bool, float (IEEE; int/int division and int-to-float correctly rounded, with
//! `OverflowError` where CPython raises it), str, tuple, list, None, Ellipsis, bound methods; the attributes
//! `real` `imag` `numerator` `denominator`; the methods of int and bool `bit_length` `bit_count` `conjugate`
//! `as_integer_ratio`, of float `is_integer` `conjugate` `as_integer_ratio` `hex`, of str `count` `find`
//! `rfind` `index` `rindex` `startswith` `endswith` `upper` `lower` `casefold` `title` `capitalize`
//! `swapcase` `strip` `lstrip` `rstrip` `split` `rsplit` `splitlines` `partition` `rpartition`
//! `removeprefix` `removesuffix` `format` `format_map` `expandtabs` `replace` `maketrans` and the `is...`
//! predicates, of tuple `count` `index`, and all of list's. The value is rendered like `str()`: ints in
//! decimal (`ValueError` past 4300 digits), floats like `repr` (`0.2`, `5.0`, `1e+16`, `-0.0`, `inf`),
//! containers with the `repr` of their items. Nesting: more than 200 parentheses is a `SyntaxError`; the
//! parser's stack (`MemoryError`) and the compiler's recursion limit (`RecursionError`, about 3000 levels)
//! are modelled on measurements of CPython.
//!
//! Not implemented — [`CalcError::Unsupported`], no output, where Python may succeed: bytes, complex
//! numbers, generator expressions, `is`/`is not`, `str.join`/`zfill`/`center`/`ljust`/`rjust`/`encode`/
//! `translate`, `int.to_bytes`/`from_bytes`, `float.fromhex`, and a bound method as the value (its `str()`
//! shows a memory address).
//!
//! The bound, in place of the reference's 3-second alarm: without `**` no int can have more digits than the
//! input, so the work that can explode is CPython's quadratic long division and repeated additions on huge
//! ints. Each int operation is charged the 30-bit digit steps CPython 3.11 spends on it (division
//! `(n - m + 1) * m`, addition and conversions `n`); past [`WORK_BUDGET`] steps — about 3 s of CPython's long
//! division, measured at 1e9 steps a second on the development machine — evaluation stops with
//! [`CalcError::TooExpensive`]. So the result can only differ from Python's where Python itself needs
//! seconds (and the reference's alarm gives no output either), while ours stays far cheaper (`num-bigint`
//! divides in subquadratic time). Multiplication is not charged: CPython's cost for it depends on the digits'
//! values, so no charge is the only safe lower bound; ours (Karatsuba/Toom-3 on 64-bit limbs) is bounded by
//! the input's length and is faster than CPython's on the same operands.

use std::cmp::Ordering;

use num_bigint::{BigInt, BigUint, Sign};

/// CPython digit steps an evaluation may spend before it is refused (about 3 s of CPython 3.11 long division
/// at the 1e9 steps/s measured on the development machine; see the module doc).
pub const WORK_BUDGET: u64 = 3_000_000_000;

/// The exceptions Python raises in the implemented subset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PyException {
    SyntaxError,
    NameError,
    AttributeError,
    TypeError,
    ValueError,
    IndexError,
    ZeroDivisionError,
    OverflowError,
    RecursionError,
    MemoryError,
}

impl PyException {
    /// The exception's class name, as Python prints it.
    pub fn name(self) -> &'static str {
        match self {
            PyException::SyntaxError => "SyntaxError",
            PyException::NameError => "NameError",
            PyException::AttributeError => "AttributeError",
            PyException::TypeError => "TypeError",
            PyException::ValueError => "ValueError",
            PyException::IndexError => "IndexError",
            PyException::ZeroDivisionError => "ZeroDivisionError",
            PyException::OverflowError => "OverflowError",
            PyException::RecursionError => "RecursionError",
            PyException::MemoryError => "MemoryError",
        }
    }
}

/// Why the calculator gives no output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalcError {
    /// The reference's filters refuse the text before evaluating it (characters, `**`, forbidden words,
    /// no `.count(`).
    #[error("rejected by the calculator's filters")]
    Rejected,
    /// Python raises this exception (while compiling, evaluating, or in `str()` of the value).
    #[error("Python raises {}", .0.name())]
    Raised(PyException),
    /// The value is `None`, which the engine does not print.
    #[error("the expression evaluates to None")]
    NoneValue,
    /// Outside the implemented subset (see the module doc).
    #[error("not implemented by the Rust calculator: {0}")]
    Unsupported(&'static str),
    /// Past the work bound (see [`WORK_BUDGET`]).
    #[error("refused: the evaluation would take CPython seconds")]
    TooExpensive,
    /// The thread for a long expression could not be started.
    #[error("could not start the calculator thread: {0}")]
    Thread(String),
}

/// What the reference's `use_calculator(expr)` returns, as the engine prints it (`str()` of the value);
/// `None` where it returns `None` or raises.
pub fn use_calculator(expr: &str) -> Option<String> {
    calculate(expr).ok()
}

/// Like [`use_calculator`], saying why there is no output.
pub fn calculate(expr: &str) -> Result<String, CalcError> {
    let expr: String = expr.chars().filter(|&c| c != ',').collect();
    if expr.chars().all(|c| "0123456789*+-/.() ".contains(c)) {
        if expr.contains("**") {
            return Err(CalcError::Rejected);
        }
        return evaluate_source(&expr);
    }
    if !expr.chars().all(|c| c.is_ascii_alphanumeric() || "'\"()._ ".contains(c)) {
        return Err(CalcError::Rejected);
    }
    let lower = expr.to_ascii_lowercase();
    if FORBIDDEN.split(' ').any(|p| lower.contains(p)) {
        return Err(CalcError::Rejected);
    }
    if !expr.contains(".count(") {
        return Err(CalcError::Rejected);
    }
    evaluate_source(&expr)
}

/// The reference's `dangerous_patterns` (§7).
const FORBIDDEN: &str =
    "__ import exec eval compile open file input raw_input globals locals vars dir getattr setattr delattr hasattr";

/// Expressions longer than this are evaluated on a thread with a large stack: parsing and evaluation recurse
/// once per nesting level (measured: up to ~8 KiB a level in a debug build, ~1 KiB in release; the deepest
/// expression Python compiles, ~3000 levels, needs ~16 MiB in debug), and only a long text can nest deeply.
const INLINE_MAX_LEN: usize = 64;
const THREAD_STACK: usize = 64 << 20;

fn evaluate_source(src: &str) -> Result<String, CalcError> {
    if src.len() <= INLINE_MAX_LEN {
        return evaluate_now(src);
    }
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("calculator".into())
            .stack_size(THREAD_STACK)
            .spawn_scoped(scope, || evaluate_now(src))
            .map_err(|e| CalcError::Thread(e.to_string()))?;
        match handle.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

fn evaluate_now(src: &str) -> Result<String, CalcError> {
    // `eval` strips leading spaces and tabs, so there is no indentation.
    let src = src.trim_start_matches([' ', '\t']);
    let toks = tokenize(src.as_bytes());
    let mut parser = Parser { toks: &toks, pos: 0, too_deep: false, outside_function: false };
    let tree = parser.parse_eval().map_err(CalcError::Raised)?;
    if parser.too_deep {
        return Err(CalcError::Raised(PyException::RecursionError));
    }
    if parser.outside_function {
        return Err(CalcError::Raised(PyException::SyntaxError));
    }
    let mut eval = Evaluator { work: 0 };
    let value = eval.eval(&tree).map_err(EvalError::into_calc)?;
    if let Value::None = value {
        return Err(CalcError::NoneValue);
    }
    py_str(&value).map_err(EvalError::into_calc)
}

// ---------------------------------------------------------------------------------------------------------
// Tokenizer (CPython 3.11 `tokenizer.c`, for the characters the filters let through)

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Name(String),
    Int(BigInt),
    /// A decimal int literal beyond the 4300-digit limit (a `SyntaxError` when the parser reaches it).
    IntTooLong,
    Float(f64),
    Imaginary,
    Str {
        text: String,
        bytes: bool,
    },
    LParen,
    RParen,
    Dot,
    Ellipsis,
    Plus,
    Minus,
    Star,
    DoubleStar,
    Slash,
    DoubleSlash,
    /// A tokenizer error: the parser raises `SyntaxError` when it gets here (CPython tokenizes lazily).
    Error,
    End,
}

/// CPython's `MAXLEVEL`: more nested brackets is a `SyntaxError`.
const MAX_PAREN_LEVEL: usize = 200;
/// `sys.int_info.default_max_str_digits` (Python 3.11): longer decimal int literals are a `SyntaxError`,
/// longer `str()` results a `ValueError`.
const MAX_STR_DIGITS: usize = 4300;

fn tokenize(src: &[u8]) -> Vec<Tok> {
    let mut toks = Vec::new();
    let mut i = 0;
    let mut level = 0usize;
    let at = |j: usize| src.get(j).copied().unwrap_or(0);
    loop {
        while at(i) == b' ' || at(i) == b'\t' {
            i += 1;
        }
        if i >= src.len() {
            toks.push(if level > 0 { Tok::Error } else { Tok::End });
            return toks;
        }
        let c = src[i];
        let step = if is_ident_start(c) {
            identifier_or_string(src, i)
        } else if c.is_ascii_digit() || (c == b'.' && at(i + 1).is_ascii_digit()) {
            number(src, i)
        } else if c == b'\'' || c == b'"' {
            string(src, i, i)
        } else {
            let (tok, len) = match c {
                b'.' if at(i + 1) == b'.' && at(i + 2) == b'.' => (Tok::Ellipsis, 3),
                b'.' => (Tok::Dot, 1),
                b'(' => {
                    if level >= MAX_PAREN_LEVEL {
                        (Tok::Error, 1)
                    } else {
                        level += 1;
                        (Tok::LParen, 1)
                    }
                }
                b')' => {
                    if level == 0 {
                        (Tok::Error, 1)
                    } else {
                        level -= 1;
                        (Tok::RParen, 1)
                    }
                }
                b'+' => (Tok::Plus, 1),
                b'-' => (Tok::Minus, 1),
                b'*' if at(i + 1) == b'*' => (Tok::DoubleStar, 2),
                b'*' => (Tok::Star, 1),
                b'/' if at(i + 1) == b'/' => (Tok::DoubleSlash, 2),
                b'/' => (Tok::Slash, 1),
                _ => (Tok::Error, 1),
            };
            Ok((tok, i + len))
        };
        match step {
            Ok((tok, next)) => {
                let stop = tok == Tok::Error;
                toks.push(tok);
                if stop {
                    return toks;
                }
                i = next;
            }
            Err(()) => {
                toks.push(Tok::Error);
                return toks;
            }
        }
    }
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 128
}

fn is_ident_char(c: u8) -> bool {
    is_ident_start(c) || c.is_ascii_digit()
}

type Lexed = Result<(Tok, usize), ()>;

/// A name, or a string literal with a prefix (`r`, `u`, `f`, `b` and their legal combinations).
fn identifier_or_string(src: &[u8], start: usize) -> Lexed {
    let at = |j: usize| src.get(j).copied().unwrap_or(0);
    let (mut saw_b, mut saw_r, mut saw_u, mut saw_f) = (false, false, false, false);
    let mut i = start;
    loop {
        let c = at(i);
        match c {
            b'b' | b'B' if !(saw_b || saw_u || saw_f) => saw_b = true,
            b'u' | b'U' if !(saw_b || saw_u || saw_r || saw_f) => saw_u = true,
            b'r' | b'R' if !(saw_r || saw_u) => saw_r = true,
            b'f' | b'F' if !(saw_f || saw_b || saw_u) => saw_f = true,
            _ => break,
        }
        i += 1;
        if at(i) == b'\'' || at(i) == b'"' {
            return string(src, start, i);
        }
    }
    while is_ident_char(at(i)) {
        i += 1;
    }
    Ok((Tok::Name(String::from_utf8_lossy(&src[start..i]).into_owned()), i))
}

/// A string literal whose prefix starts at `start` and whose opening quote is at `quote_at`. No escapes: a
/// backslash cannot pass the filters, and neither can a brace, so an f-string is a plain string.
fn string(src: &[u8], start: usize, quote_at: usize) -> Lexed {
    let quote = src[quote_at];
    let bytes = src[start..quote_at].iter().any(|c| c.eq_ignore_ascii_case(&b'b'));
    let triple = src.get(quote_at + 1) == Some(&quote) && src.get(quote_at + 2) == Some(&quote);
    let open = if triple { 3 } else { 1 };
    let body_start = quote_at + open;
    let mut i = body_start;
    let mut run = 0;
    while run < open {
        let c = *src.get(i).ok_or(())?;
        run = if c == quote { run + 1 } else { 0 };
        i += 1;
    }
    let text = String::from_utf8_lossy(&src[body_start..i - open]).into_owned();
    Ok((Tok::Str { text, bytes }, i))
}

/// CPython's `verify_end_of_number`: a number may be directly followed by a keyword that can follow a
/// number (`1if`, `1or`, ...), not by any other identifier character.
fn end_of_number_ok(src: &[u8], i: usize) -> bool {
    let rest = &src[i.min(src.len())..];
    let keyword_follows = match rest.first() {
        Some(b'a') => rest[1..].starts_with(b"nd"),
        Some(b'e') => rest[1..].starts_with(b"lse"),
        Some(b'f') => rest[1..].starts_with(b"or"),
        Some(b'i') => matches!(rest.get(1), Some(b'f' | b'n' | b's')),
        Some(b'o') => rest[1..].starts_with(b"r"),
        Some(b'n') => rest[1..].starts_with(b"ot"),
        _ => false,
    };
    keyword_follows || !rest.first().is_some_and(|&c| is_ident_char(c))
}

/// CPython's `tok_decimal_tail`: digits with single underscores between them; returns the index after.
fn decimal_tail(src: &[u8], mut i: usize) -> Result<usize, ()> {
    let at = |j: usize| src.get(j).copied().unwrap_or(0);
    loop {
        while at(i).is_ascii_digit() {
            i += 1;
        }
        if at(i) != b'_' {
            return Ok(i);
        }
        i += 1;
        if !at(i).is_ascii_digit() {
            return Err(());
        }
    }
}

/// Digits of one radix with single underscores (after the `0x`/`0o`/`0b` prefix); returns the index after.
fn radix_digits(src: &[u8], mut i: usize, radix: u32) -> Result<usize, ()> {
    let at = |j: usize| src.get(j).copied().unwrap_or(0);
    let is_digit = |c: u8| (c as char).is_digit(radix);
    loop {
        if at(i) == b'_' {
            i += 1;
        }
        if !is_digit(at(i)) {
            return Err(());
        }
        while is_digit(at(i)) {
            i += 1;
        }
        if at(i) != b'_' {
            break;
        }
    }
    // `0o18`, `0b12`: a decimal digit right after is an error.
    if at(i).is_ascii_digit() {
        return Err(());
    }
    Ok(i)
}

fn number(src: &[u8], start: usize) -> Lexed {
    let at = |j: usize| src.get(j).copied().unwrap_or(0);
    let clean =
        |a: usize, b: usize| -> String { src[a..b].iter().filter(|&&c| c != b'_').map(|&c| c as char).collect() };
    let mut i;
    let mut is_float = false;
    if at(start) == b'0' && matches!(at(start + 1), b'x' | b'X' | b'o' | b'O' | b'b' | b'B') {
        let radix = match at(start + 1) {
            b'x' | b'X' => 16,
            b'o' | b'O' => 8,
            _ => 2,
        };
        i = radix_digits(src, start + 2, radix)?;
        if !end_of_number_ok(src, i) {
            return Err(());
        }
        let digits = clean(start + 2, i);
        let value = BigInt::parse_bytes(digits.as_bytes(), radix).ok_or(())?;
        return Ok((Tok::Int(value), i));
    }
    if at(start) == b'.' {
        // `.5`: a fraction.
        i = decimal_tail(src, start + 1)?;
        is_float = true;
    } else if at(start) == b'0' {
        // Zeros (maybe with underscores), then maybe more digits: fine only as a float or as zero.
        i = start + 1;
        loop {
            if at(i) == b'_' {
                i += 1;
                if !at(i).is_ascii_digit() {
                    return Err(());
                }
            }
            if at(i) != b'0' {
                break;
            }
            i += 1;
        }
        let mut nonzero = false;
        if at(i).is_ascii_digit() {
            nonzero = true;
            i = decimal_tail(src, i)?;
        }
        if at(i) == b'.' {
            i += 1;
            if at(i).is_ascii_digit() {
                i = decimal_tail(src, i)?;
            }
            is_float = true;
        } else if !matches!(at(i), b'e' | b'E' | b'j' | b'J') && nonzero {
            return Err(()); // leading zeros in a decimal integer literal
        }
    } else {
        i = decimal_tail(src, start)?;
        if at(i) == b'.' {
            i += 1;
            if at(i).is_ascii_digit() {
                i = decimal_tail(src, i)?;
            }
            is_float = true;
        }
    }
    if matches!(at(i), b'e' | b'E') {
        let e = i;
        let mut j = i + 1;
        if matches!(at(j), b'+' | b'-') {
            j += 1;
            if !at(j).is_ascii_digit() {
                return Err(());
            }
            i = decimal_tail(src, j)?;
            is_float = true;
        } else if at(j).is_ascii_digit() {
            i = decimal_tail(src, j)?;
            is_float = true;
        } else {
            // `1else`: the number ends before the `e` of a keyword; anything else is an error.
            return if end_of_number_ok(src, e) { finish_number(&clean(start, e), is_float, e) } else { Err(()) };
        }
    }
    if matches!(at(i), b'j' | b'J') {
        i += 1;
        return if end_of_number_ok(src, i) { Ok((Tok::Imaginary, i)) } else { Err(()) };
    }
    if !end_of_number_ok(src, i) {
        return Err(());
    }
    finish_number(&clean(start, i), is_float, i)
}

fn finish_number(text: &str, is_float: bool, end: usize) -> Lexed {
    if is_float {
        let value: f64 = text.parse().map_err(|_| ())?;
        return Ok((Tok::Float(value), end));
    }
    let digits = text.trim_start_matches('0');
    if text.starts_with('0') && !digits.is_empty() {
        return Err(()); // `09else`: leading zeros
    }
    if digits.len() > MAX_STR_DIGITS {
        return Ok((Tok::IntTooLong, end));
    }
    let value = if digits.is_empty() { BigInt::ZERO } else { BigInt::parse_bytes(digits.as_bytes(), 10).ok_or(())? };
    Ok((Tok::Int(value), end))
}

// ---------------------------------------------------------------------------------------------------------
// Parser (the Python 3.11 PEG grammar's expression rules, restricted to these tokens)

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    FloorDiv,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpOp {
    In,
    NotIn,
    Is,
    IsNot,
}

#[derive(Debug)]
enum Expr {
    Const(Value),
    Name,
    Unsupported(&'static str),
    /// A subtree cut off beyond the compiler's recursion limit (never evaluated: `RecursionError`).
    TooDeep,
    Neg(Box<Node>),
    Pos(Box<Node>),
    Not(Box<Node>),
    Bin(BinOp, Box<Node>, Box<Node>),
    And(Vec<Node>),
    Or(Vec<Node>),
    Compare(Box<Node>, Vec<(CmpOp, Node)>),
    IfExp {
        cond: Box<Node>,
        body: Box<Node>,
        orelse: Box<Node>,
    },
    Attr(Box<Node>, String),
    Call(Box<Node>, Arg),
}

#[derive(Debug)]
enum Arg {
    None,
    Positional(Box<Node>),
    Starred(Box<Node>),
}

#[derive(Debug)]
struct Node {
    expr: Expr,
    /// Nesting depth of the AST (CPython's compiler counts it against its recursion limit).
    depth: u32,
}

/// The compiler's recursion limit in AST levels: `sys.getrecursionlimit()` (1000) times
/// `COMPILER_STACK_FRAME_SCALE` (3), less 3 per Python frame below `eval`: 9 levels for a caller three frames
/// deep, like the reference's `use_calculator` called from a script's top level. (CPython's own count also
/// drifts by a few levels within one process, so nesting this deep is never reproducible exactly.)
const AST_DEPTH_LIMIT: u32 = 3000 - 9;
/// The PEG parser's `MAXSTACK` (a `MemoryError` beyond it) and our model of its rule depth: measured on
/// CPython 3.11, a number nested in `p` parentheses under `n` unary operators sits at 25 + 28p + n rule
/// levels; a call's parentheses cost 24, the right operand of `and`/`or` 2 more, of `in` 3, an `else` 1,
/// a string literal 2, `()` as much as a parenthesized expression. (Where the first pass finds a syntax
/// error near that limit, CPython's second pass, with its error rules, may stop with `MemoryError` instead
/// of `SyntaxError`: not modelled, both give no output.)
const PEG_MAX_LEVEL: u32 = 6000;
const PEG_BASE: u32 = 25;
const PEG_GROUP: u32 = 28;
const PEG_CALL: u32 = 24;
const PEG_BOOL_RIGHT: u32 = 2;
const PEG_COMPARE_RIGHT: u32 = 3;
const PEG_ELSE: u32 = 1;
const PEG_STRING: u32 = 2;

/// Python 3.11's keywords (`keyword.kwlist`).
const KEYWORDS: &str = "False None True and as assert async await break class continue def del elif else except \
    finally for from global if import in is lambda nonlocal not or pass raise return try while with yield";

fn is_keyword(name: &str) -> bool {
    KEYWORDS.split_whitespace().any(|k| k == name)
}

struct Parser<'a> {
    toks: &'a [Tok],
    pos: usize,
    too_deep: bool,
    /// `await`/`yield` outside a function: a `SyntaxError` from the compiler, after the recursion check.
    outside_function: bool,
}

type PResult<T> = Result<T, PyException>;

const SYNTAX: PyException = PyException::SyntaxError;

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        self.toks.get(self.pos).unwrap_or(&Tok::End)
    }

    fn peek_at(&self, k: usize) -> &Tok {
        self.toks.get(self.pos + k).unwrap_or(&Tok::End)
    }

    fn advance(&mut self) {
        self.pos += 1;
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Tok::Name(n) if n == kw)
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        let hit = self.is_kw(kw);
        if hit {
            self.advance();
        }
        hit
    }

    fn expect(&mut self, tok: &Tok) -> PResult<()> {
        if self.peek() == tok {
            self.advance();
            Ok(())
        } else {
            Err(SYNTAX)
        }
    }

    /// A node one level above `children`; beyond the compiler's limit the subtree is cut off (so that nothing
    /// deeper is ever built, dropped or evaluated) and the expression will raise `RecursionError`.
    fn node(&mut self, expr: Expr, child_depth: u32) -> Node {
        let depth = child_depth + 1;
        if depth > AST_DEPTH_LIMIT {
            self.too_deep = true;
            return Node { expr: Expr::TooDeep, depth: AST_DEPTH_LIMIT + 1 };
        }
        Node { expr, depth }
    }

    fn leaf(&mut self, expr: Expr) -> Node {
        self.node(expr, 0)
    }

    fn parse_eval(&mut self) -> PResult<Node> {
        let e = self.expression(PEG_BASE)?;
        match self.peek() {
            Tok::End => Ok(e),
            _ => Err(SYNTAX),
        }
    }

    /// `expression: disjunction 'if' disjunction 'else' expression | disjunction | lambdef`, with the
    /// right-nested `else` chain parsed iteratively.
    fn expression(&mut self, lvl: u32) -> PResult<Node> {
        let mut pending = Vec::new();
        let mut lvl = lvl;
        loop {
            if self.is_kw("lambda") {
                return Err(SYNTAX); // a lambda needs `:`
            }
            let body = self.disjunction(lvl)?;
            if !self.eat_kw("if") {
                let mut result = body;
                while let Some((body, cond)) = pending.pop() {
                    let (body, cond): (Node, Node) = (body, cond);
                    let d = body.depth.max(cond.depth).max(result.depth);
                    let expr = Expr::IfExp { cond: Box::new(cond), body: Box::new(body), orelse: Box::new(result) };
                    result = self.node(expr, d);
                }
                return Ok(result);
            }
            let cond = self.disjunction(lvl)?;
            if !self.eat_kw("else") {
                return Err(SYNTAX);
            }
            pending.push((body, cond));
            lvl += PEG_ELSE;
        }
    }

    fn disjunction(&mut self, lvl: u32) -> PResult<Node> {
        self.bool_chain(lvl, "or")
    }

    fn conjunction(&mut self, lvl: u32) -> PResult<Node> {
        self.bool_chain(lvl, "and")
    }

    fn bool_chain(&mut self, lvl: u32, kw: &str) -> PResult<Node> {
        let operand = |p: &mut Self, l: u32| if kw == "or" { p.conjunction(l) } else { p.inversion(l) };
        let first = operand(self, lvl)?;
        if !self.is_kw(kw) {
            return Ok(first);
        }
        let mut values = vec![first];
        while self.eat_kw(kw) {
            values.push(operand(self, lvl + PEG_BOOL_RIGHT)?);
        }
        let d = values.iter().map(|v| v.depth).max().unwrap_or(0);
        let expr = if kw == "or" { Expr::Or(values) } else { Expr::And(values) };
        Ok(self.node(expr, d))
    }

    fn inversion(&mut self, lvl: u32) -> PResult<Node> {
        let mut nots = 0;
        while self.eat_kw("not") {
            nots += 1;
        }
        let mut e = self.comparison(lvl + nots)?;
        for _ in 0..nots {
            let d = e.depth;
            e = self.node(Expr::Not(Box::new(e)), d);
        }
        Ok(e)
    }

    fn comparison(&mut self, lvl: u32) -> PResult<Node> {
        let left = self.sum(lvl)?;
        let mut ops = Vec::new();
        loop {
            let op = if self.is_kw("in") {
                self.advance();
                CmpOp::In
            } else if self.is_kw("not") && matches!(self.peek_at(1), Tok::Name(n) if n == "in") {
                self.pos += 2;
                CmpOp::NotIn
            } else if self.eat_kw("is") {
                if self.eat_kw("not") {
                    CmpOp::IsNot
                } else {
                    CmpOp::Is
                }
            } else {
                break;
            };
            ops.push((op, self.sum(lvl + PEG_COMPARE_RIGHT)?));
        }
        if ops.is_empty() {
            return Ok(left);
        }
        let d = ops.iter().map(|(_, n)| n.depth).max().unwrap_or(0).max(left.depth);
        Ok(self.node(Expr::Compare(Box::new(left), ops), d))
    }

    fn sum(&mut self, lvl: u32) -> PResult<Node> {
        let mut left = self.term(lvl)?;
        loop {
            let op = match self.peek() {
                Tok::Plus => BinOp::Add,
                Tok::Minus => BinOp::Sub,
                _ => return Ok(left),
            };
            self.advance();
            let right = self.term(lvl)?;
            let d = left.depth.max(right.depth);
            left = self.node(Expr::Bin(op, Box::new(left), Box::new(right)), d);
        }
    }

    fn term(&mut self, lvl: u32) -> PResult<Node> {
        let mut left = self.factor(lvl)?;
        loop {
            let op = match self.peek() {
                Tok::Star => BinOp::Mul,
                Tok::Slash => BinOp::Div,
                Tok::DoubleSlash => BinOp::FloorDiv,
                _ => return Ok(left),
            };
            self.advance();
            let right = self.factor(lvl)?;
            let d = left.depth.max(right.depth);
            left = self.node(Expr::Bin(op, Box::new(left), Box::new(right)), d);
        }
    }

    fn factor(&mut self, lvl: u32) -> PResult<Node> {
        let mut signs = Vec::new();
        while let Tok::Plus | Tok::Minus = self.peek() {
            signs.push(*self.peek() == Tok::Minus);
            self.advance();
        }
        let mut e = self.power(lvl + signs.len() as u32)?;
        while let Some(minus) = signs.pop() {
            let d = e.depth;
            e = self.node(if minus { Expr::Neg(Box::new(e)) } else { Expr::Pos(Box::new(e)) }, d);
        }
        Ok(e)
    }

    fn power(&mut self, lvl: u32) -> PResult<Node> {
        let base = self.await_primary(lvl)?;
        if *self.peek() == Tok::DoubleStar {
            // Unreachable through the filters (`**` is rejected, `*` is not a string-path character).
            self.advance();
            self.factor(lvl)?;
            return Ok(self.leaf(Expr::Unsupported("the ** operator")));
        }
        Ok(base)
    }

    fn await_primary(&mut self, lvl: u32) -> PResult<Node> {
        if self.eat_kw("await") {
            self.primary(lvl + 1)?;
            self.outside_function = true;
            return Ok(self.leaf(Expr::Unsupported("await")));
        }
        self.primary(lvl)
    }

    fn primary(&mut self, lvl: u32) -> PResult<Node> {
        let mut e = self.atom(lvl)?;
        loop {
            match self.peek() {
                Tok::Dot => {
                    self.advance();
                    let name = match self.peek() {
                        Tok::Name(n) if !is_keyword(n) => n.clone(),
                        _ => return Err(SYNTAX),
                    };
                    self.advance();
                    let d = e.depth;
                    e = self.node(Expr::Attr(Box::new(e), name), d);
                }
                Tok::LParen => {
                    self.advance();
                    let (arg, arg_depth) = self.call_argument(lvl + PEG_CALL)?;
                    let d = e.depth.max(arg_depth);
                    e = self.node(Expr::Call(Box::new(e), arg), d);
                }
                _ => return Ok(e),
            }
        }
    }

    /// What follows a call's `(`: nothing, one expression, or `*expression` (no commas can pass the filters).
    fn call_argument(&mut self, lvl: u32) -> PResult<(Arg, u32)> {
        if *self.peek() == Tok::RParen {
            self.advance();
            return Ok((Arg::None, 0));
        }
        if *self.peek() == Tok::Star {
            self.advance();
            let e = self.expression(lvl)?;
            self.expect(&Tok::RParen)?;
            // The `Starred` node is one AST level above its value.
            let depth = e.depth + 1;
            if depth > AST_DEPTH_LIMIT {
                self.too_deep = true;
            }
            return Ok((Arg::Starred(Box::new(e)), depth.min(AST_DEPTH_LIMIT + 1)));
        }
        let e = self.expression(lvl)?;
        if self.is_kw("for") || self.is_kw("async") {
            self.skip_generator()?;
            let g = self.leaf(Expr::Unsupported("generator expressions"));
            return Ok((Arg::Positional(Box::new(g)), 1));
        }
        self.expect(&Tok::RParen)?;
        let d = e.depth;
        Ok((Arg::Positional(Box::new(e)), d))
    }

    /// Skips a generator expression's `for ...` clauses and the closing parenthesis.
    fn skip_generator(&mut self) -> PResult<()> {
        let mut depth = 0usize;
        loop {
            match self.peek() {
                Tok::LParen => depth += 1,
                Tok::RParen if depth == 0 => {
                    self.advance();
                    return Ok(());
                }
                Tok::RParen => depth -= 1,
                Tok::End | Tok::Error => return Err(SYNTAX),
                _ => {}
            }
            self.advance();
        }
    }

    fn atom(&mut self, lvl: u32) -> PResult<Node> {
        let leaf_levels = if matches!(self.peek(), Tok::Str { .. }) { PEG_STRING } else { 0 };
        if lvl + leaf_levels > PEG_MAX_LEVEL {
            return Err(PyException::MemoryError);
        }
        let tok = self.peek().clone();
        self.advance();
        let expr = match tok {
            Tok::Name(name) => match name.as_str() {
                "True" => Expr::Const(Value::Bool(true)),
                "False" => Expr::Const(Value::Bool(false)),
                "None" => Expr::Const(Value::None),
                n if is_keyword(n) => return Err(SYNTAX),
                _ => Expr::Name,
            },
            Tok::Int(v) => Expr::Const(Value::Int(v)),
            Tok::IntTooLong => return Err(SYNTAX),
            Tok::Float(v) => Expr::Const(Value::Float(v)),
            Tok::Imaginary => Expr::Unsupported("complex numbers"),
            Tok::Str { text, bytes } => {
                let mut text = text;
                let mut all_bytes = bytes;
                let mut any_bytes = bytes;
                while let Tok::Str { text: more, bytes } = self.peek() {
                    text.push_str(more);
                    all_bytes &= *bytes;
                    any_bytes |= *bytes;
                    self.advance();
                }
                if any_bytes && !all_bytes {
                    return Err(SYNTAX); // cannot mix bytes and nonbytes literals
                }
                if any_bytes {
                    Expr::Unsupported("bytes")
                } else {
                    Expr::Const(Value::Str(text))
                }
            }
            Tok::Ellipsis => Expr::Const(Value::Ellipsis),
            Tok::LParen => return self.group(lvl + PEG_GROUP),
            _ => return Err(SYNTAX),
        };
        Ok(self.leaf(expr))
    }

    /// After `(`: the empty tuple, a parenthesized expression, a generator expression or `(yield ...)`.
    fn group(&mut self, lvl: u32) -> PResult<Node> {
        if *self.peek() == Tok::RParen {
            // The parser first tries an expression inside: as deep as a parenthesized one.
            if lvl > PEG_MAX_LEVEL {
                return Err(PyException::MemoryError);
            }
            self.advance();
            return Ok(self.leaf(Expr::Const(Value::Tuple(Vec::new()))));
        }
        if self.eat_kw("yield") {
            if self.eat_kw("from") || *self.peek() != Tok::RParen {
                self.expression(lvl)?;
            }
            self.expect(&Tok::RParen)?;
            self.outside_function = true;
            return Ok(self.leaf(Expr::Unsupported("yield")));
        }
        let e = self.expression(lvl)?;
        if self.is_kw("for") || self.is_kw("async") {
            self.skip_generator()?;
            return Ok(self.leaf(Expr::Unsupported("generator expressions")));
        }
        self.expect(&Tok::RParen)?;
        Ok(e)
    }
}

// ---------------------------------------------------------------------------------------------------------
// Values and evaluation

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Int(BigInt),
    Bool(bool),
    Float(f64),
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    None,
    Ellipsis,
    /// A bound method: receiver and method name.
    Method(Box<Value>, &'static str),
}

#[derive(Debug)]
enum EvalError {
    Py(PyException),
    Unsupported(&'static str),
    TooExpensive,
}

impl EvalError {
    fn into_calc(self) -> CalcError {
        match self {
            EvalError::Py(e) => CalcError::Raised(e),
            EvalError::Unsupported(what) => CalcError::Unsupported(what),
            EvalError::TooExpensive => CalcError::TooExpensive,
        }
    }
}

type EResult<T> = Result<T, EvalError>;

fn raise<T>(e: PyException) -> EResult<T> {
    Err(EvalError::Py(e))
}

use PyException::{AttributeError, IndexError, NameError, OverflowError, TypeError, ValueError, ZeroDivisionError};

struct Evaluator {
    /// CPython digit steps spent so far (see [`WORK_BUDGET`]).
    work: u64,
}

/// Size of an int in CPython's 30-bit digits.
fn digits30(x: &BigInt) -> u64 {
    x.bits().div_ceil(30)
}

impl Evaluator {
    fn charge(&mut self, steps: u64) -> EResult<()> {
        self.work = self.work.saturating_add(steps);
        if self.work > WORK_BUDGET {
            return Err(EvalError::TooExpensive);
        }
        Ok(())
    }

    fn eval(&mut self, node: &Node) -> EResult<Value> {
        match &node.expr {
            Expr::Const(v) => Ok(v.clone()),
            Expr::Name => raise(NameError),
            Expr::Unsupported(what) => Err(EvalError::Unsupported(what)),
            Expr::TooDeep => raise(PyException::RecursionError),
            Expr::Neg(e) => {
                let v = self.eval(e)?;
                match v {
                    Value::Int(i) => Ok(Value::Int(-i)),
                    Value::Bool(b) => Ok(Value::Int(-BigInt::from(b as u8))),
                    Value::Float(f) => Ok(Value::Float(-f)),
                    _ => raise(TypeError),
                }
            }
            Expr::Pos(e) => {
                let v = self.eval(e)?;
                match v {
                    Value::Int(_) | Value::Float(_) => Ok(v),
                    Value::Bool(b) => Ok(Value::Int(BigInt::from(b as u8))),
                    _ => raise(TypeError),
                }
            }
            Expr::Not(e) => {
                let v = self.eval(e)?;
                Ok(Value::Bool(!truthy(&v)))
            }
            Expr::Bin(op, a, b) => {
                let a = self.eval(a)?;
                let b = self.eval(b)?;
                self.binary(*op, a, b)
            }
            Expr::And(values) | Expr::Or(values) => {
                let is_and = matches!(node.expr, Expr::And(_));
                let mut last = Value::None;
                for e in values {
                    last = self.eval(e)?;
                    if truthy(&last) != is_and {
                        return Ok(last);
                    }
                }
                Ok(last)
            }
            Expr::Compare(left, ops) => {
                let mut left = self.eval(left)?;
                for (op, right) in ops {
                    let right = self.eval(right)?;
                    let holds = match op {
                        CmpOp::In => self.contains(&right, &left)?,
                        CmpOp::NotIn => !self.contains(&right, &left)?,
                        CmpOp::Is | CmpOp::IsNot => return Err(EvalError::Unsupported("is (identity)")),
                    };
                    if !holds {
                        return Ok(Value::Bool(false));
                    }
                    left = right;
                }
                Ok(Value::Bool(true))
            }
            Expr::IfExp { cond, body, orelse } => {
                let c = self.eval(cond)?;
                if truthy(&c) {
                    self.eval(body)
                } else {
                    self.eval(orelse)
                }
            }
            Expr::Attr(obj, name) => {
                let v = self.eval(obj)?;
                get_attribute(v, name)
            }
            Expr::Call(callee, arg) => {
                let f = self.eval(callee)?;
                let args = match arg {
                    Arg::None => Vec::new(),
                    Arg::Positional(e) => vec![self.eval(e)?],
                    Arg::Starred(e) => match self.eval(e)? {
                        Value::Tuple(items) | Value::List(items) => items,
                        Value::Str(s) => s.chars().map(|c| Value::Str(c.to_string())).collect(),
                        _ => return raise(TypeError),
                    },
                };
                match f {
                    Value::Method(recv, name) => self.call_method(*recv, name, args),
                    _ => raise(TypeError), // not callable
                }
            }
        }
    }

    fn binary(&mut self, op: BinOp, a: Value, b: Value) -> EResult<Value> {
        use Value::{Bool, Float, Int, Tuple};
        match (a, b) {
            (Tuple(x), Tuple(y)) if op == BinOp::Add => Ok(Tuple([x, y].concat())),
            (Tuple(t), n @ (Int(_) | Bool(_))) | (n @ (Int(_) | Bool(_)), Tuple(t)) if op == BinOp::Mul => {
                repeat(t, &n).map(Tuple)
            }
            (a @ (Int(_) | Bool(_) | Float(_)), b @ (Int(_) | Bool(_) | Float(_))) => {
                if let (Some(x), Some(y)) = (as_int(&a), as_int(&b)) {
                    return self.int_binary(op, &x, &y);
                }
                let x = self.float_of(&a)?;
                let y = self.float_of(&b)?;
                Ok(Float(match op {
                    BinOp::Add => x + y,
                    BinOp::Sub => x - y,
                    BinOp::Mul => x * y,
                    BinOp::Div => {
                        if y == 0.0 {
                            return raise(ZeroDivisionError);
                        }
                        x / y
                    }
                    BinOp::FloorDiv => float_floor_div(x, y)?,
                }))
            }
            _ => raise(TypeError),
        }
    }

    fn int_binary(&mut self, op: BinOp, x: &BigInt, y: &BigInt) -> EResult<Value> {
        let (n, m) = (digits30(x), digits30(y));
        Ok(match op {
            BinOp::Add => {
                self.charge(n.max(m))?;
                Value::Int(x + y)
            }
            BinOp::Sub => {
                self.charge(n.max(m))?;
                Value::Int(x - y)
            }
            BinOp::Mul => Value::Int(x * y),
            BinOp::Div => {
                if y.sign() == Sign::NoSign {
                    return raise(ZeroDivisionError);
                }
                self.charge(n + m)?;
                let negative = (x.sign() == Sign::Minus) != (y.sign() == Sign::Minus);
                let q = ratio_to_f64(x.magnitude(), y.magnitude()).ok_or(EvalError::Py(OverflowError))?;
                Value::Float(if negative { -q } else { q })
            }
            BinOp::FloorDiv => {
                if y.sign() == Sign::NoSign {
                    return raise(ZeroDivisionError);
                }
                // CPython: one-digit divisors and short dividends are linear, otherwise schoolbook x_divrem.
                self.charge(if m <= 1 || n < m { n.max(1) } else { (n - m + 1).saturating_mul(m) })?;
                Value::Int(floor_div(x, y))
            }
        })
    }

    fn float_of(&mut self, v: &Value) -> EResult<f64> {
        match v {
            Value::Float(f) => Ok(*f),
            Value::Bool(b) => Ok(*b as u8 as f64),
            Value::Int(i) => {
                self.charge(digits30(i))?;
                int_to_f64(i).ok_or(EvalError::Py(OverflowError))
            }
            _ => raise(TypeError),
        }
    }

    /// `item in container`.
    fn contains(&mut self, container: &Value, item: &Value) -> EResult<bool> {
        match container {
            Value::Str(s) => match item {
                Value::Str(sub) => Ok(s.contains(sub.as_str())),
                _ => raise(TypeError),
            },
            Value::Tuple(items) | Value::List(items) => {
                for x in items {
                    if self.equal(x, item)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            _ => raise(TypeError),
        }
    }

    /// Python's `==` between the values of the subset.
    fn equal(&mut self, a: &Value, b: &Value) -> EResult<bool> {
        use Value::*;
        Ok(match (a, b) {
            (Int(_) | Bool(_), Int(_) | Bool(_)) => {
                let (x, y) = (as_int(a).unwrap_or_default(), as_int(b).unwrap_or_default());
                self.charge(digits30(&x).min(digits30(&y)))?;
                x == y
            }
            (Float(x), Float(y)) => x == y,
            (Float(f), i @ (Int(_) | Bool(_))) | (i @ (Int(_) | Bool(_)), Float(f)) => {
                let i = as_int(i).unwrap_or_default();
                float_to_int_exact(*f).is_some_and(|g| g == i)
            }
            (Str(x), Str(y)) => x == y,
            (Tuple(x), Tuple(y)) | (List(x), List(y)) => {
                if x.len() != y.len() {
                    return Ok(false);
                }
                for (p, q) in x.iter().zip(y) {
                    if !self.equal(p, q)? {
                        return Ok(false);
                    }
                }
                true
            }
            (None, None) | (Ellipsis, Ellipsis) => true,
            (Method(..), Method(..)) => return Err(EvalError::Unsupported("comparing bound methods")),
            _ => false,
        })
    }

    fn call_method(&mut self, recv: Value, name: &'static str, args: Vec<Value>) -> EResult<Value> {
        match recv {
            Value::Str(s) => self.str_method(&s, name, args),
            Value::Int(_) | Value::Bool(_) => {
                let i = as_int(&recv).unwrap_or_default();
                if name == "to_bytes" || name == "from_bytes" {
                    return Err(EvalError::Unsupported("int.to_bytes/from_bytes"));
                }
                no_args(&args)?;
                Ok(match name {
                    "bit_count" => Value::Int(BigInt::from(i.magnitude().count_ones())),
                    "conjugate" => Value::Int(i),
                    "as_integer_ratio" => Value::Tuple(vec![Value::Int(i), Value::Int(BigInt::ONE)]),
                    _ => Value::Int(BigInt::from(i.bits())),
                })
            }
            Value::Float(f) => {
                if name == "fromhex" {
                    return Err(EvalError::Unsupported("float.fromhex"));
                }
                no_args(&args)?;
                Ok(match name {
                    "is_integer" => Value::Bool(f.is_finite() && f.floor() == f),
                    "conjugate" => Value::Float(f),
                    "hex" => Value::Str(float_hex(f)),
                    _ => {
                        if f.is_infinite() {
                            return raise(OverflowError);
                        }
                        if f.is_nan() {
                            return raise(ValueError);
                        }
                        let (n, d) = float_ratio(f);
                        Value::Tuple(vec![Value::Int(n), Value::Int(d)])
                    }
                })
            }
            Value::Tuple(items) => {
                let x = one_arg(args)?;
                match name {
                    "count" => self.count_equal(&items, &x),
                    _ => self.index_of(&items, &x),
                }
            }
            Value::List(mut items) => self.list_method(&mut items, name, args),
            _ => raise(TypeError),
        }
    }

    fn count_equal(&mut self, items: &[Value], x: &Value) -> EResult<Value> {
        let mut n = 0u64;
        for item in items {
            if self.equal(item, x)? {
                n += 1;
            }
        }
        Ok(Value::Int(BigInt::from(n)))
    }

    fn index_of(&mut self, items: &[Value], x: &Value) -> EResult<Value> {
        for (k, item) in items.iter().enumerate() {
            if self.equal(item, x)? {
                return Ok(Value::Int(BigInt::from(k)));
            }
        }
        raise(ValueError)
    }

    fn list_method(&mut self, items: &mut Vec<Value>, name: &str, args: Vec<Value>) -> EResult<Value> {
        match name {
            "count" => {
                let x = one_arg(args)?;
                self.count_equal(items, &x)
            }
            "index" => {
                let x = one_arg(args)?;
                self.index_of(items, &x)
            }
            "copy" => {
                no_args(&args)?;
                Ok(Value::List(items.clone()))
            }
            "clear" | "reverse" | "sort" => {
                // The lists of the subset hold only strings, so sorting cannot fail.
                no_args(&args)?;
                Ok(Value::None)
            }
            "append" => {
                one_arg(args)?;
                Ok(Value::None)
            }
            "extend" => match one_arg(args)? {
                Value::Str(_) | Value::Tuple(_) | Value::List(_) => Ok(Value::None),
                _ => raise(TypeError),
            },
            "insert" => raise(TypeError), // needs two arguments
            "remove" => {
                let x = one_arg(args)?;
                self.index_of(items, &x).map(|_| Value::None)
            }
            _ => {
                // pop
                if args.len() > 1 {
                    return raise(TypeError);
                }
                let index = match args.first() {
                    None => -1,
                    Some(v) => {
                        let i = index_arg(v)?;
                        i64::try_from(&i).map_err(|_| EvalError::Py(OverflowError))?
                    }
                };
                let len = items.len() as i64;
                let k = if index < 0 { index + len } else { index };
                if items.is_empty() || k < 0 || k >= len {
                    return raise(IndexError);
                }
                Ok(items.remove(k as usize))
            }
        }
    }

    fn str_method(&mut self, s: &str, name: &'static str, args: Vec<Value>) -> EResult<Value> {
        let string = |t: String| Ok(Value::Str(t));
        let boolean = |b: bool| Ok(Value::Bool(b));
        let int = |n: usize| Ok(Value::Int(BigInt::from(n)));
        match name {
            "count" | "find" | "rfind" | "index" | "rindex" => {
                let sub = search_arg(args)?;
                match name {
                    "count" => int(if sub.is_empty() { s.chars().count() + 1 } else { s.matches(&sub).count() }),
                    "find" => Ok(Value::Int(s.find(&sub).map_or(BigInt::from(-1), BigInt::from))),
                    "rfind" => Ok(Value::Int(s.rfind(&sub).map_or(BigInt::from(-1), BigInt::from))),
                    "index" => s.find(&sub).map_or(raise(ValueError), int),
                    _ => s.rfind(&sub).map_or(raise(ValueError), int),
                }
            }
            "startswith" | "endswith" => {
                let arg = first_of_up_to(args, 3)?;
                let test = |p: &str| if name == "startswith" { s.starts_with(p) } else { s.ends_with(p) };
                match arg {
                    Value::Str(p) => boolean(test(&p)),
                    Value::Tuple(items) => {
                        for item in items {
                            match item {
                                Value::Str(p) if test(&p) => return boolean(true),
                                Value::Str(_) => {}
                                _ => return raise(TypeError),
                            }
                        }
                        boolean(false)
                    }
                    _ => raise(TypeError),
                }
            }
            "upper" | "lower" | "casefold" | "title" | "capitalize" | "swapcase" | "isalnum" | "isalpha"
            | "isascii" | "isdecimal" | "isdigit" | "isidentifier" | "islower" | "isnumeric" | "isprintable"
            | "isspace" | "istitle" | "isupper" => {
                no_args(&args)?;
                match name {
                    "upper" => string(s.to_ascii_uppercase()),
                    "lower" | "casefold" => string(s.to_ascii_lowercase()),
                    "title" => string(str_title(s)),
                    "capitalize" => {
                        let mut t = s.to_ascii_lowercase();
                        if let Some(first) = t.get_mut(0..1) {
                            first.make_ascii_uppercase();
                        }
                        string(t)
                    }
                    "swapcase" => {
                        string(
                            s.chars()
                                .map(|c| {
                                    if c.is_ascii_uppercase() {
                                        c.to_ascii_lowercase()
                                    } else {
                                        c.to_ascii_uppercase()
                                    }
                                })
                                .collect(),
                        )
                    }
                    "isalnum" => boolean(!s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric())),
                    "isalpha" => boolean(!s.is_empty() && s.chars().all(|c| c.is_ascii_alphabetic())),
                    "isascii" => boolean(s.is_ascii()),
                    "isdecimal" | "isdigit" | "isnumeric" => {
                        boolean(!s.is_empty() && s.chars().all(|c| c.is_ascii_digit()))
                    }
                    "isidentifier" => boolean(
                        s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    ),
                    "islower" => {
                        boolean(s.chars().any(|c| c.is_ascii_lowercase()) && !s.chars().any(|c| c.is_ascii_uppercase()))
                    }
                    "isupper" => {
                        boolean(s.chars().any(|c| c.is_ascii_uppercase()) && !s.chars().any(|c| c.is_ascii_lowercase()))
                    }
                    "isprintable" => boolean(s.chars().all(|c| (' '..='~').contains(&c))),
                    "isspace" => boolean(!s.is_empty() && s.chars().all(is_py_space)),
                    _ => boolean(str_istitle(s)),
                }
            }
            "strip" | "lstrip" | "rstrip" => {
                let chars = optional_arg(args)?;
                let set: Option<String> = match chars {
                    None | Some(Value::None) => None,
                    Some(Value::Str(c)) => Some(c),
                    Some(_) => return raise(TypeError),
                };
                let strip = |c: char| set.as_ref().map_or(is_py_space(c), |set| set.contains(c));
                string(
                    match name {
                        "strip" => s.trim_matches(strip),
                        "lstrip" => s.trim_start_matches(strip),
                        _ => s.trim_end_matches(strip),
                    }
                    .to_string(),
                )
            }
            "split" | "rsplit" => {
                if args.len() > 2 {
                    return raise(TypeError);
                }
                if args.len() == 2 {
                    return Err(EvalError::Unsupported("split with maxsplit"));
                }
                let parts: Vec<String> = match args.into_iter().next() {
                    None | Some(Value::None) => {
                        s.split(is_py_space).filter(|p| !p.is_empty()).map(String::from).collect()
                    }
                    Some(Value::Str(sep)) if sep.is_empty() => return raise(ValueError),
                    Some(Value::Str(sep)) if name == "split" => s.split(sep.as_str()).map(String::from).collect(),
                    Some(Value::Str(sep)) => {
                        let mut v: Vec<String> = s.rsplit(sep.as_str()).map(String::from).collect();
                        v.reverse();
                        v
                    }
                    Some(_) => return raise(TypeError),
                };
                Ok(Value::List(parts.into_iter().map(Value::Str).collect()))
            }
            "splitlines" => {
                if let Some(v) = optional_arg(args)? {
                    c_int_arg(&v)?;
                }
                // No line break can pass the filters.
                Ok(Value::List(if s.is_empty() { Vec::new() } else { vec![Value::Str(s.to_string())] }))
            }
            "expandtabs" => {
                if let Some(v) = optional_arg(args)? {
                    c_int_arg(&v)?;
                }
                string(s.to_string()) // no tab can pass the filters
            }
            "partition" | "rpartition" => {
                let sep = match one_arg(args)? {
                    Value::Str(sep) => sep,
                    _ => return raise(TypeError),
                };
                if sep.is_empty() {
                    return raise(ValueError);
                }
                let found = if name == "partition" { s.find(&sep) } else { s.rfind(&sep) };
                let parts = match found {
                    Some(k) => [&s[..k], sep.as_str(), &s[k + sep.len()..]],
                    None if name == "partition" => [s, "", ""],
                    None => ["", "", s],
                };
                Ok(Value::Tuple(parts.iter().map(|p| Value::Str(p.to_string())).collect()))
            }
            "removeprefix" | "removesuffix" => {
                let affix = match one_arg(args)? {
                    Value::Str(a) => a,
                    _ => return raise(TypeError),
                };
                let out = if name == "removeprefix" {
                    s.strip_prefix(affix.as_str())
                } else {
                    s.strip_suffix(affix.as_str())
                };
                string(out.unwrap_or(s).to_string())
            }
            // No `{` can pass the filters, so formatting returns the string whatever the arguments.
            "format" => string(s.to_string()),
            "format_map" => {
                one_arg(args)?;
                string(s.to_string())
            }
            // Both need a comma (or a dict) to succeed.
            "replace" | "maketrans" => raise(TypeError),
            _ => Err(EvalError::Unsupported("str.join/zfill/center/ljust/rjust/encode/translate")),
        }
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Int(i) => i.sign() != Sign::NoSign,
        Value::Bool(b) => *b,
        Value::Float(f) => *f != 0.0,
        Value::Str(s) => !s.is_empty(),
        Value::Tuple(t) | Value::List(t) => !t.is_empty(),
        Value::None => false,
        Value::Ellipsis | Value::Method(..) => true,
    }
}

/// An int or bool as an int (bool is a subclass of int).
fn as_int(v: &Value) -> Option<BigInt> {
    match v {
        Value::Int(i) => Some(i.clone()),
        Value::Bool(b) => Some(BigInt::from(*b as u8)),
        _ => None,
    }
}

/// An argument used as an index (`__index__`): ints and bools only.
fn index_arg(v: &Value) -> EResult<BigInt> {
    as_int(v).ok_or(EvalError::Py(TypeError))
}

/// An argument converted to a C `int` (Argument Clinic's `int`): `OverflowError` beyond 32 bits.
fn c_int_arg(v: &Value) -> EResult<i32> {
    i32::try_from(&index_arg(v)?).map_err(|_| EvalError::Py(OverflowError))
}

fn no_args(args: &[Value]) -> EResult<()> {
    if args.is_empty() {
        Ok(())
    } else {
        raise(TypeError)
    }
}

fn one_arg(args: Vec<Value>) -> EResult<Value> {
    let mut it = args.into_iter();
    match (it.next(), it.next()) {
        (Some(v), None) => Ok(v),
        _ => raise(TypeError),
    }
}

fn optional_arg(args: Vec<Value>) -> EResult<Option<Value>> {
    let mut it = args.into_iter();
    match (it.next(), it.next()) {
        (v, None) => Ok(v),
        _ => raise(TypeError),
    }
}

/// The first of one to `max` arguments (the others would be `start`/`end`, which need a comma).
fn first_of_up_to(args: Vec<Value>, max: usize) -> EResult<Value> {
    if args.is_empty() || args.len() > max {
        return raise(TypeError);
    }
    if args.len() > 1 {
        return Err(EvalError::Unsupported("start/end arguments"));
    }
    Ok(args.into_iter().next().unwrap_or(Value::None))
}

/// The substring argument of `count`/`find`/`index` and their right-hand variants.
fn search_arg(args: Vec<Value>) -> EResult<String> {
    match first_of_up_to(args, 3)? {
        Value::Str(sub) => Ok(sub),
        _ => raise(TypeError),
    }
}

/// Python's `str.isspace` for ASCII.
fn is_py_space(c: char) -> bool {
    matches!(c, ' ' | '\t'..='\r' | '\x1c'..='\x1f')
}

fn str_title(s: &str) -> String {
    let mut previous_cased = false;
    s.chars()
        .map(|c| {
            let out = if previous_cased { c.to_ascii_lowercase() } else { c.to_ascii_uppercase() };
            previous_cased = c.is_ascii_alphabetic();
            out
        })
        .collect()
}

fn str_istitle(s: &str) -> bool {
    let (mut cased, mut previous_cased) = (false, false);
    for c in s.chars() {
        if c.is_ascii_uppercase() {
            if previous_cased {
                return false;
            }
            previous_cased = true;
            cased = true;
        } else if c.is_ascii_lowercase() {
            if !previous_cased {
                return false;
            }
            previous_cased = true;
            cased = true;
        } else {
            previous_cased = false;
        }
    }
    cased
}

/// `tuple * n`: `n` must fit a C `ssize_t`.
fn repeat(items: Vec<Value>, n: &Value) -> EResult<Vec<Value>> {
    let n = as_int(n).unwrap_or_default();
    let n = i64::try_from(&n).map_err(|_| EvalError::Py(OverflowError))?;
    if n <= 0 || items.is_empty() {
        return Ok(Vec::new());
    }
    // Only the empty tuple can reach here through the filters.
    Err(EvalError::Unsupported("repeating a non-empty tuple"))
}

/// The attribute `name` of `v`: a data attribute's value, a bound method, or `AttributeError`.
fn get_attribute(v: Value, name: &str) -> EResult<Value> {
    // The public (non-underscore) attributes of each type in Python 3.11, less the data attributes.
    const INT: &str = "as_integer_ratio bit_count bit_length conjugate from_bytes to_bytes";
    const FLOAT: &str = "as_integer_ratio conjugate fromhex hex is_integer";
    const STR: &str = "capitalize casefold center count encode endswith expandtabs find format format_map index \
        isalnum isalpha isascii isdecimal isdigit isidentifier islower isnumeric isprintable isspace istitle \
        isupper join ljust lower lstrip maketrans partition removeprefix removesuffix replace rfind rindex rjust \
        rpartition rsplit rstrip split splitlines startswith strip swapcase title translate upper zfill";
    const TUPLE: &str = "count index";
    const LIST: &str = "append clear copy count extend index insert pop remove reverse sort";
    let methods: &'static str = match &v {
        Value::Int(_) | Value::Bool(_) => {
            let i = as_int(&v).unwrap_or_default();
            match name {
                "real" | "numerator" => return Ok(Value::Int(i)),
                "imag" => return Ok(Value::Int(BigInt::ZERO)),
                "denominator" => return Ok(Value::Int(BigInt::ONE)),
                _ => INT,
            }
        }
        Value::Float(f) => match name {
            "real" => return Ok(Value::Float(*f)),
            "imag" => return Ok(Value::Float(0.0)),
            _ => FLOAT,
        },
        Value::Str(_) => STR,
        Value::Tuple(_) => TUPLE,
        Value::List(_) => LIST,
        Value::None | Value::Ellipsis | Value::Method(..) => "",
    };
    match methods.split_whitespace().find(|m| *m == name) {
        Some(m) => Ok(Value::Method(Box::new(v), m)),
        None => raise(AttributeError),
    }
}

// ---------------------------------------------------------------------------------------------------------
// Numbers

/// Python's `//` on ints (rounds towards negative infinity).
fn floor_div(x: &BigInt, y: &BigInt) -> BigInt {
    let q = x / y;
    let r = x - &q * y;
    if r.sign() != Sign::NoSign && (r.sign() == Sign::Minus) != (y.sign() == Sign::Minus) {
        q - 1
    } else {
        q
    }
}

/// CPython's `float_floor_div` (via `_float_div_mod`).
fn float_floor_div(vx: f64, wx: f64) -> EResult<f64> {
    if wx == 0.0 {
        return raise(ZeroDivisionError);
    }
    let m = vx % wx; // C fmod
    let mut div = (vx - m) / wx;
    if m != 0.0 && (wx < 0.0) != (m < 0.0) {
        div -= 1.0;
    }
    Ok(if div != 0.0 {
        let mut floordiv = div.floor();
        if div - floordiv > 0.5 {
            floordiv += 1.0;
        }
        floordiv
    } else {
        0.0f64.copysign(vx / wx)
    })
}

/// `float(x)` for an int: correctly rounded (half to even), `None` where Python raises `OverflowError`.
fn int_to_f64(x: &BigInt) -> Option<f64> {
    let f = ratio_to_f64(x.magnitude(), &BigUint::ONE)?;
    Some(if x.sign() == Sign::Minus { -f } else { f })
}

/// `n / d` for `d > 0`, correctly rounded to a double (half to even, subnormals included) like CPython's
/// int true division; `None` when it rounds to 2**1024 or more (`OverflowError`).
fn ratio_to_f64(n: &BigUint, d: &BigUint) -> Option<f64> {
    if n.bits() == 0 {
        return Some(0.0);
    }
    let e0 = n.bits() as i64 - d.bits() as i64; // n/d lies in (2^(e0-1), 2^(e0+1))
    if e0 > 1025 {
        return None;
    }
    if e0 < -1077 {
        return Some(0.0); // below a quarter of the smallest subnormal
    }
    let shifted_cmp = |e: i64| if e >= 0 { n.cmp(&(d << e as u64)) } else { (n << (-e) as u64).cmp(d) };
    let k = if shifted_cmp(e0) != Ordering::Less { e0 } else { e0 - 1 }; // 2^k <= n/d < 2^(k+1)
    let ulp = (k - 52).max(-1074);
    let (num, den) = if ulp >= 0 { (n.clone(), d << ulp as u64) } else { (n << (-ulp) as u64, d.clone()) };
    let q = &num / &den;
    let r = num - &q * &den;
    let mut q = u64::try_from(&q).ok()?;
    match (r << 1u32).cmp(&den) {
        Ordering::Greater => q += 1,
        Ordering::Equal if q & 1 == 1 => q += 1,
        _ => {}
    }
    compose_f64(q, ulp)
}

/// `q * 2^e` for `q <= 2^53` that is exactly representable (or `None` past the largest double).
fn compose_f64(mut q: u64, mut e: i64) -> Option<f64> {
    if q == 0 {
        return Some(0.0);
    }
    if q == 1 << 53 {
        q >>= 1;
        e += 1;
    }
    if q < 1 << 52 {
        return Some(f64::from_bits(q)); // subnormal: e == -1074
    }
    let biased = e + 52 + 1023;
    if biased >= 2047 {
        return None;
    }
    Some(f64::from_bits(((biased as u64) << 52) | (q - (1 << 52))))
}

/// A finite double as `mantissa * 2^exponent` with an integer mantissa (sign included).
fn float_parts(f: f64) -> (i64, i64) {
    let bits = f.to_bits();
    let exp_field = ((bits >> 52) & 0x7ff) as i64;
    let frac = (bits & ((1 << 52) - 1)) as i64;
    let (m, e) = if exp_field == 0 { (frac, -1074) } else { (frac | (1 << 52), exp_field - 1075) };
    (if f.is_sign_negative() { -m } else { m }, e)
}

/// A finite, integral double as an int.
fn float_to_int_exact(f: f64) -> Option<BigInt> {
    if !f.is_finite() || f.floor() != f {
        return None;
    }
    let (m, e) = float_parts(f);
    Some(if e >= 0 { BigInt::from(m) << e as u64 } else { BigInt::from(m) >> (-e) as u64 })
}

/// `float.as_integer_ratio` for a finite double: the fraction in lowest terms.
fn float_ratio(f: f64) -> (BigInt, BigInt) {
    let (mut m, mut e) = float_parts(f);
    if m == 0 {
        return (BigInt::ZERO, BigInt::ONE);
    }
    while m % 2 == 0 && e < 0 {
        m /= 2;
        e += 1;
    }
    if e >= 0 {
        (BigInt::from(m) << e as u64, BigInt::ONE)
    } else {
        (BigInt::from(m), BigInt::ONE << (-e) as u64)
    }
}

/// `float.hex`.
fn float_hex(f: f64) -> String {
    if !f.is_finite() {
        return float_repr(f);
    }
    let sign = if f.is_sign_negative() { "-" } else { "" };
    if f == 0.0 {
        return format!("{sign}0x0.0p+0");
    }
    let bits = f.to_bits();
    let exp_field = ((bits >> 52) & 0x7ff) as i64;
    let frac = bits & ((1 << 52) - 1);
    let (lead, exp) = if exp_field == 0 { (0, -1022) } else { (1, exp_field - 1023) };
    format!("{sign}0x{lead}.{frac:013x}p{}{}", if exp < 0 { '-' } else { '+' }, exp.abs())
}

/// Python's `repr(float)`: the shortest digits that round-trip, fixed notation for decimal exponents in
/// -4 < e < 16, otherwise `d.ddde+XX`.
fn float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.into();
    }
    let sign = if x.is_sign_negative() { "-" } else { "" };
    if x == 0.0 {
        return format!("{sign}0.0");
    }
    // Rust's `{:e}` gives the shortest digits that round-trip (`1.2345e-7`), rounding a tie between two
    // such strings up where Python's `repr` takes the even one: redo the rounding to that many digits, which
    // `{:.Ne}` does exactly with ties to even, and keep it if it still round-trips.
    let shortest = format!("{:e}", x.abs());
    let precision = shortest.split_once('e').map_or(0, |(m, _)| m.len().saturating_sub(2));
    let even = format!("{:.*e}", precision, x.abs());
    let sci = if even.parse::<f64>() == Ok(x.abs()) { even } else { shortest };
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exponent: i64 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let decpt = exponent + 1; // the decimal point sits after `decpt` digits
    let n = digits.len() as i64;
    let body = if !(-4 < decpt && decpt <= 16) {
        let rest = if digits.len() > 1 { format!(".{}", &digits[1..]) } else { String::new() };
        let e = decpt - 1;
        format!("{}{rest}e{}{:02}", &digits[..1], if e < 0 { '-' } else { '+' }, e.abs())
    } else if decpt <= 0 {
        format!("0.{}{digits}", "0".repeat((-decpt) as usize))
    } else if decpt >= n {
        format!("{digits}{}.0", "0".repeat((decpt - n) as usize))
    } else {
        format!("{}.{}", &digits[..decpt as usize], &digits[decpt as usize..])
    };
    format!("{sign}{body}")
}

// ---------------------------------------------------------------------------------------------------------
// str() and repr()

fn int_str(i: &BigInt) -> EResult<String> {
    // 10^4300 < 2^14285: more bits than that is more than 4300 digits, without converting.
    if i.bits() > 14_290 {
        return raise(ValueError);
    }
    let s = i.to_str_radix(10);
    if s.trim_start_matches('-').len() > MAX_STR_DIGITS {
        return raise(ValueError);
    }
    Ok(s)
}

fn py_str(v: &Value) -> EResult<String> {
    match v {
        Value::Str(s) => Ok(s.clone()),
        _ => py_repr(v),
    }
}

fn py_repr(v: &Value) -> EResult<String> {
    Ok(match v {
        Value::Int(i) => int_str(i)?,
        Value::Bool(b) => if *b { "True" } else { "False" }.to_string(),
        Value::Float(f) => float_repr(*f),
        Value::Str(s) => str_repr(s),
        Value::Tuple(items) => {
            let parts = items.iter().map(py_repr).collect::<EResult<Vec<_>>>()?;
            if parts.len() == 1 {
                format!("({},)", parts[0])
            } else {
                format!("({})", parts.join(", "))
            }
        }
        Value::List(items) => format!("[{}]", items.iter().map(py_repr).collect::<EResult<Vec<_>>>()?.join(", ")),
        Value::None => "None".to_string(),
        Value::Ellipsis => "Ellipsis".to_string(),
        Value::Method(..) => return Err(EvalError::Unsupported("str() of a bound method (a memory address)")),
    })
}

/// `repr(str)` for the printable ASCII strings of the subset (no backslash can pass the filters).
fn str_repr(s: &str) -> String {
    if s.contains('\'') && !s.contains('"') {
        format!("\"{s}\"")
    } else {
        format!("'{}'", s.replace('\'', "\\'"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calc(expr: &str) -> Option<String> {
        use_calculator(expr)
    }

    fn raised(expr: &str) -> Option<&'static str> {
        match calculate(expr) {
            Err(CalcError::Raised(e)) => Some(e.name()),
            _ => None,
        }
    }

    // Every expected value below was checked with CPython 3.11.7.
    #[test]
    fn arithmetic_matches_python() {
        for (expr, want) in [
            ("12/60", "0.2"),
            ("10/2", "5.0"),
            ("3*4", "12"),
            ("1,000*2", "2000"),
            ("0.1+0.2", "0.30000000000000004"),
            ("7//2", "3"),
            ("-7//2", "-4"),
            ("7.0//2", "3.0"),
            ("-7.0//2", "-4.0"),
            ("0/-5", "-0.0"),
            ("-0/5", "0.0"),
            ("-0.0", "-0.0"),
            ("1/3", "0.3333333333333333"),
            ("2/3*3", "2.0"),
            ("10000000000000000.0", "1e+16"),
            ("1000000000000000.0", "1000000000000000.0"),
            ("0.00001", "1e-05"),
            ("0.0001", "0.0001"),
            ("5.", "5.0"),
            (".5", "0.5"),
            ("00.5", "0.5"),
            ("00", "0"),
            ("0", "0"),
            ("- - -1", "-1"),
            ("+-+-3", "3"),
            ("  3*4", "12"),
            ("()", "()"),
            ("()*3", "()"),
            ("...", "Ellipsis"),
            (
                "123456789012345678901234567890*98765432109876543210",
                "12193263113702179522496570642237463801111263526900",
            ),
            ("(10000000000000000000001)/3", "3.3333333333333335e+21"),
            ("99999999999999999999999999999999//7", "14285714285714285714285714285714"),
        ] {
            assert_eq!(calc(expr).as_deref(), Some(want), "{expr}");
        }
    }

    #[test]
    fn arithmetic_errors_match_python() {
        for (expr, want) in [
            ("1/0", Some("ZeroDivisionError")),
            ("1//0", Some("ZeroDivisionError")),
            ("1.0/0", Some("ZeroDivisionError")),
            ("012", Some("SyntaxError")),
            ("1.2.3", Some("SyntaxError")),
            ("1 2", Some("SyntaxError")),
            ("(1+2", Some("SyntaxError")),
            ("", Some("SyntaxError")),
            ("-()", Some("TypeError")),
            ("(1)(2)", Some("TypeError")),
            ("()*9223372036854775808", Some("OverflowError")),
        ] {
            assert_eq!(raised(expr), want, "{expr}");
        }
        assert_eq!(calculate("2**3"), Err(CalcError::Rejected));
        assert_eq!(calc("1e5"), None); // `e` sends it down the string path, which needs `.count(`
        assert_eq!(calculate("1e5"), Err(CalcError::Rejected));
    }

    #[test]
    fn huge_numbers_match_python() {
        let big = "1".repeat(400);
        assert_eq!(raised(&format!("{big}/1")), Some("OverflowError")); // int/int too large for a float
        assert_eq!(raised(&format!("{big}*1.0")), Some("OverflowError")); // int -> float
        assert_eq!(calc(&format!("{big}.0")).as_deref(), Some("inf")); // a float literal overflows to inf
        assert_eq!(calc(&format!("{big}.0*0")).as_deref(), Some("nan"));
        assert_eq!(calc(&format!("{big}//{big}")).as_deref(), Some("1"));
        assert_eq!(calc(&format!("{big}/{big}1")).as_deref(), Some("0.1"));
        let limit = "9".repeat(4300);
        assert_eq!(calc(&limit).as_deref(), Some(limit.as_str()));
        assert_eq!(raised(&format!("{limit}9")), Some("SyntaxError")); // 4301-digit literal
        assert_eq!(raised(&format!("{limit}*10")), Some("ValueError")); // str() of 4301 digits
        assert_eq!(calc(&"0".repeat(5000)).as_deref(), Some("0"));
    }

    #[test]
    fn string_path_matches_python() {
        for (expr, want) in [
            ("'strawberry'.count('r')", Some("3")),
            ("\"a,b\".count(\",\")", Some("3")), // commas removed: 'ab'.count('') == 3
            ("'Mississippi'.lower().count('s')", Some("4")),
            ("'they''re'.title().count('R')", Some("0")),
            ("'banana'.count('an').bit_length()", Some("2")),
            ("'abc'.count('a').real", Some("1")),
            ("'abc'.count('a') and 'x y'.split()", Some("['x', 'y']")),
            ("'a' in 'abc' and 'abc'.count('z')", Some("0")),
            ("'abc'.count('a') if 'b' not in 'abc' else 'x'.upper()", Some("X")),
            ("'a b'.split().sort() or 'abc'.count('b')", Some("1")),
            ("'a b'.split().sort() and 'x'.count('x')", None), // None is not printed
            ("'abc'.count('a').as_integer_ratio()", Some("(1, 1)")),
            ("'it''s'.count('s') and 'it''s'.partition('x')", Some("('its', '', '')")),
            ("'it''s'.count('s') and \"it's\".partition('x')", Some("(\"it's\", '', '')")),
        ] {
            assert_eq!(calc(expr).as_deref(), want, "{expr}");
        }
        for (expr, want) in [
            ("'abc'.count(1)", "TypeError"),
            ("'abc'.count()", "TypeError"),
            ("x.count('a')", "NameError"),
            ("True.count('a')", "AttributeError"),
            ("'abc'.count('a').is_integer()", "AttributeError"),
            ("'abc'.count('a'", "SyntaxError"),
            ("'abc.count('a')", "SyntaxError"),
            ("'a'.split('').count('a')", "ValueError"),
        ] {
            assert_eq!(raised(expr), Some(want), "{expr}");
        }
        for expr in ["'directory'.count('r')", "'abc'.upper()", "'a-b'.count('a')", "'x'.__class__.count('x')"] {
            assert_eq!(calculate(expr), Err(CalcError::Rejected), "{expr}");
        }
    }

    #[test]
    fn outside_the_subset_is_refused() {
        for (expr, what) in [
            ("'a'.count('a') and 'a'.upper", "bound method"),
            ("'a'.count('a') is 1", "identity"),
            ("b'abc'.count(b'a')", "bytes"),
            ("'a'.count('a') and 1j", "complex"),
            ("'a'.count(c for c in 'a')", "generator"),
            ("'a'.count('a') and 'a'.zfill(5)", "zfill"),
        ] {
            assert!(matches!(calculate(expr), Err(CalcError::Unsupported(_))), "{what}: {expr}");
        }
        // Where Python fails before reaching the construct, so do we.
        assert_eq!(raised("b'a' 'b'.count('a')"), Some("SyntaxError"));
        assert_eq!(calc("'a'.count('a') or 'a'.upper").as_deref(), Some("1"));
    }

    #[test]
    fn float_repr_matches_python() {
        for (x, want) in [
            (0.2, "0.2"),
            (5.0, "5.0"),
            (1e16, "1e+16"),
            (1e-5, "1e-05"),
            (1.5e300, "1.5e+300"),
            (123456789.125, "123456789.125"),
            (f64::MIN_POSITIVE, "2.2250738585072014e-308"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
            (-0.0, "-0.0"),
            (638653894280067.0 + 0.25, "638653894280067.2"), // a tie between two shortest strings: the even one
            (0.125, "0.125"),
            (f64::INFINITY, "inf"),
            (f64::NAN, "nan"),
        ] {
            assert_eq!(float_repr(x), want);
        }
        assert_eq!(float_hex(0.1), "0x1.999999999999ap-4");
        assert_eq!(float_hex(5e-324), "0x0.0000000000001p-1022");
    }

    #[test]
    fn division_rounds_like_python() {
        // 2**53 + 1 over 1 rounds to even; 2**1024 - 2**970 (exactly halfway to 2**1024) overflows.
        assert_eq!(calc("9007199254740993/1").as_deref(), Some("9007199254740992.0"));
        assert_eq!(calc("9007199254740995/1").as_deref(), Some("9007199254740996.0"));
        let half_to_overflow = (BigInt::ONE << 1024u32) - (BigInt::ONE << 970u32);
        assert_eq!(raised(&format!("{half_to_overflow}/1")), Some("OverflowError"));
        let below = &half_to_overflow - 1;
        assert_eq!(calc(&format!("{below}/1")).as_deref(), Some("1.7976931348623157e+308"));
    }

    #[test]
    fn nesting_limits_match_python() {
        assert_eq!(calc(&format!("{}1{}", "(".repeat(200), ")".repeat(200))).as_deref(), Some("1"));
        assert_eq!(raised(&format!("{}1{}", "(".repeat(201), ")".repeat(201))), Some("SyntaxError"));
        assert_eq!(raised(&format!("{}1", "-".repeat(5000))), Some("RecursionError"));
        assert_eq!(raised(&format!("{}{}1{}", "(".repeat(199), "-".repeat(500), ")".repeat(199))), Some("MemoryError"));
        assert_eq!(raised("1+".repeat(100_000).trim_end_matches('+')), Some("RecursionError"));
        // Deep but within the limit: evaluated (on the large-stack thread).
        assert_eq!(calc(&format!("{}1", "-".repeat(2900))).as_deref(), Some("1"));
        assert_eq!(calc(&format!("'ab'.count('a'){}", ".real".repeat(2900))).as_deref(), Some("1"));
        assert_eq!(calc(&format!("{}'ab'.count('a')", "not ".repeat(2900))).as_deref(), Some("True"));
    }

    #[test]
    fn work_is_bounded() {
        // A 1,000,000-digit dividend over a 500,000-digit divisor (products of 4000-digit factors, nested so
        // that the multiplications stay cheap): CPython's long division needs about 3e9 digit steps for it.
        fn product(n: usize, factor: &str) -> String {
            if n == 1 {
                return factor.to_string();
            }
            format!("({})*({})", product(n / 2, factor), product(n - n / 2, factor))
        }
        let factor = "9".repeat(4000);
        let expr = format!("({})//({})", product(250, &factor), product(125, &factor));
        assert_eq!(calculate(&expr), Err(CalcError::TooExpensive));
        let expr = format!("({})//({})", product(3, &factor), product(2, &factor));
        assert_eq!(calc(&expr), Some(factor));
    }
}
