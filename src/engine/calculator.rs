//! The chat engine's calculator tool (NANOCHAT.md §7, the reference's `use_calculator`, [A']): Python's
//! `str()` of the value of the text between `<|python_start|>` and `<|python_end|>`, computed in Rust with
//! CPython 3.11's semantics, never by running Python. The reference's filters: commas are removed; text made
//! only of `0123456789*+-/.() ` is evaluated unless it contains `**`; other text must use only ASCII letters,
//! digits, `'"()._` and space, contain none of the forbidden words (case-insensitively) and contain `.count(`,
//! and is evaluated with empty builtins. An exception gives no output.
//!
//! Evaluated exactly as Python does — the expressions the model emits:
//! - Arithmetic: int literals (unbounded; a leading zero only in `0`, `00`, ...; more than 4300 digits is a
//!   `SyntaxError`), float literals (`1.5`, `.5`, `5.`), unary `+` `-`, binary `*` `/` `//` `+` `-` and
//!   parentheses. Ints stay exact; `/` is true division (int/int correctly rounded, `OverflowError` past the
//!   largest double); `//` floors; an int meeting a float is converted (`OverflowError` past the largest
//!   double); a zero divisor raises `ZeroDivisionError`; floats overflow to `inf`. `str()` prints an int in
//!   decimal (`ValueError` past 4300 digits: the reference's engine would crash there, ours gives no output)
//!   and a float like `repr` (`0.2`, `5.0`, `1e+16`, `-0.0`, `inf`, `nan`). `%` cannot pass the filters.
//! - `.count`: `'text'.count('x')` (either quote, spaces between the tokens): the number of non-overlapping
//!   occurrences, like `str.count`.
//!
//! Everything else the filters let through gives no output ([`CalcError::Unsupported`]), also where Python
//! has a value: `()` and `...` (which Python prints as `()` and `Ellipsis`), calls (which always raise
//! `TypeError` in the arithmetic path), arithmetic of more than [`MAX_TOKENS`] tokens, and on the `.count`
//! path any other form: parentheses, concatenated, prefixed or triple-quoted strings, other methods,
//! attributes, names, numbers and keyword operators.
//!
//! [`MAX_TOKENS`] stands in for the reference's 3-second alarm and keeps far from CPython's nesting limits
//! (200 parentheses, ~3000 levels of recursion): ints only grow by multiplying literals of at most 4300
//! digits, and the costliest 100-token expressions (products and quotients of 50 such literals) take CPython
//! 3.11 about 0.2 s, so the alarm never fires on what is evaluated here.

use std::cmp::Ordering;

use num_bigint::{BigInt, BigUint, Sign};

/// Arithmetic with more tokens than this gives no output (see the module doc).
pub const MAX_TOKENS: usize = 100;

/// CPython's limit on the digits of an int literal and of `str()` of an int.
const MAX_STR_DIGITS: usize = 4300;

/// The reference's `dangerous_patterns` (§7).
const FORBIDDEN: &str =
    "__ import exec eval compile open file input raw_input globals locals vars dir getattr setattr delattr hasattr";

/// Why the calculator gives no output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalcError {
    /// The reference's filters refuse the text before evaluating it (characters, `**`, forbidden words, no
    /// `.count(`).
    Rejected,
    /// Python raises the exception of this class (while compiling, evaluating, or in `str()` of the value).
    Raised(&'static str),
    /// Outside what this port evaluates (see the module doc); Python may have a value.
    Unsupported,
}

const SYNTAX: CalcError = CalcError::Raised("SyntaxError");
const ZERO_DIVISION: CalcError = CalcError::Raised("ZeroDivisionError");
const OVERFLOW: CalcError = CalcError::Raised("OverflowError");

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
        let tree = Parser { toks: tokenize(&expr)?, pos: 0 }.parse()?;
        return match eval(&tree)? {
            Num::Int(i) => int_str(&i),
            Num::Float(f) => Ok(float_repr(f)),
        };
    }
    if !expr.chars().all(|c| c.is_ascii_alphanumeric() || "'\"()._ ".contains(c)) {
        return Err(CalcError::Rejected);
    }
    let lower = expr.to_ascii_lowercase();
    if FORBIDDEN.split(' ').any(|p| lower.contains(p)) || !expr.contains(".count(") {
        return Err(CalcError::Rejected);
    }
    count(&expr)
}

// ---------------------------------------------------------------------------------------------------------
// The `.count` path

/// `'text'.count('x')`, with spaces allowed between the tokens; any other form is unsupported.
fn count(src: &str) -> Result<String, CalcError> {
    let mut rest = src;
    let haystack = literal(&mut rest)?;
    for token in [".", "count", "("] {
        eat(&mut rest, token)?;
    }
    let needle = literal(&mut rest)?;
    eat(&mut rest, ")")?;
    if !rest.trim_start_matches(' ').is_empty() {
        return Err(CalcError::Unsupported);
    }
    Ok(haystack.matches(needle).count().to_string())
}

fn eat(rest: &mut &str, token: &str) -> Result<(), CalcError> {
    *rest = rest.trim_start_matches(' ').strip_prefix(token).ok_or(CalcError::Unsupported)?;
    Ok(())
}

/// A string literal in `'` or `"` quotes (without a backslash, which the filters refuse, its text is its
/// value). A triple-quoted one reads as `''` followed by a quote, which no caller accepts.
fn literal<'a>(rest: &mut &'a str) -> Result<&'a str, CalcError> {
    let s = rest.trim_start_matches(' ');
    let quote = s.chars().next().filter(|&c| c == '\'' || c == '"').ok_or(CalcError::Unsupported)?;
    let body = &s[1..];
    let end = body.find(quote).ok_or(CalcError::Unsupported)?;
    *rest = &body[end + 1..];
    Ok(&body[..end])
}

// ---------------------------------------------------------------------------------------------------------
// The arithmetic path

enum Tok {
    Num(Num),
    Op(&'static str),
}

#[derive(Clone)]
enum Num {
    Int(BigInt),
    Float(f64),
}

/// CPython's tokenizer on the filter's characters: numbers, operators, parentheses, `.` and `...`.
fn tokenize(src: &str) -> Result<Vec<Tok>, CalcError> {
    let s = src.as_bytes();
    let digits_from = |i: usize| i + s[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < s.len() {
        if toks.len() > MAX_TOKENS {
            return Err(CalcError::Unsupported);
        }
        if s[i] == b' ' {
            i += 1;
        } else if s[i].is_ascii_digit() || (s[i] == b'.' && s.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            let mut end = digits_from(i);
            if s.get(end) == Some(&b'.') {
                end = digits_from(end + 1);
                toks.push(Tok::Num(Num::Float(src[i..end].parse().map_err(|_| SYNTAX)?)));
            } else {
                let text = &src[i..end];
                let zero = text.bytes().all(|c| c == b'0');
                if !zero && (text.starts_with('0') || text.len() > MAX_STR_DIGITS) {
                    return Err(SYNTAX);
                }
                toks.push(Tok::Num(Num::Int(text.parse().map_err(|_| SYNTAX)?)));
            }
            i = end;
        } else {
            let rest = &src[i..];
            let op = ["...", "//", "+", "-", "*", "/", "(", ")", "."]
                .into_iter()
                .find(|op| rest.starts_with(op))
                .ok_or(CalcError::Unsupported)?; // unreachable after the filter
            toks.push(Tok::Op(op));
            i += op.len();
        }
    }
    if toks.len() > MAX_TOKENS {
        return Err(CalcError::Unsupported);
    }
    Ok(toks)
}

enum Node {
    Num(Num),
    Neg(Box<Node>),
    Binary(Box<Node>, &'static str, Box<Node>),
}

/// Python's grammar for these tokens: `sum: term (('+'|'-') term)*`, `term: factor (('*'|'/'|'//')
/// factor)*`, `factor: ('+'|'-') factor | atom`, `atom: NUMBER | '(' sum ')'`, where `()`, `...` and a call
/// (an atom followed by `(`) are unsupported.
struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn parse(mut self) -> Result<Node, CalcError> {
        let tree = self.sum()?;
        if self.pos < self.toks.len() {
            return Err(SYNTAX);
        }
        Ok(tree)
    }

    fn peek(&self) -> Option<&'static str> {
        match self.toks.get(self.pos) {
            Some(Tok::Op(op)) => Some(op),
            _ => None,
        }
    }

    fn binary(&mut self, ops: &[&str], operand: fn(&mut Self) -> Result<Node, CalcError>) -> Result<Node, CalcError> {
        let mut left = operand(self)?;
        while let Some(op) = self.peek().filter(|op| ops.contains(op)) {
            self.pos += 1;
            left = Node::Binary(Box::new(left), op, Box::new(operand(self)?));
        }
        Ok(left)
    }

    fn sum(&mut self) -> Result<Node, CalcError> {
        self.binary(&["+", "-"], Self::term)
    }

    fn term(&mut self) -> Result<Node, CalcError> {
        self.binary(&["*", "/", "//"], Self::factor)
    }

    fn factor(&mut self) -> Result<Node, CalcError> {
        let sign = self.peek().filter(|op| ["+", "-"].contains(op));
        if let Some(sign) = sign {
            self.pos += 1;
            let operand = self.factor()?;
            return Ok(if sign == "-" { Node::Neg(Box::new(operand)) } else { operand });
        }
        let atom = match self.toks.get(self.pos) {
            Some(Tok::Num(n)) => {
                self.pos += 1;
                Node::Num(n.clone())
            }
            Some(Tok::Op("(")) if matches!(self.toks.get(self.pos + 1), Some(Tok::Op(")"))) => {
                return Err(CalcError::Unsupported)
            }
            Some(Tok::Op("(")) => {
                self.pos += 1;
                let inner = self.sum()?;
                if self.peek() != Some(")") {
                    return Err(SYNTAX);
                }
                self.pos += 1;
                inner
            }
            Some(Tok::Op("...")) => return Err(CalcError::Unsupported),
            _ => return Err(SYNTAX),
        };
        if self.peek() == Some("(") {
            return Err(CalcError::Unsupported);
        }
        Ok(atom)
    }
}

fn eval(node: &Node) -> Result<Num, CalcError> {
    Ok(match node {
        Node::Num(n) => n.clone(),
        Node::Neg(x) => match eval(x)? {
            Num::Int(i) => Num::Int(-i),
            Num::Float(f) => Num::Float(-f),
        },
        Node::Binary(a, op, b) => binary(eval(a)?, op, eval(b)?)?,
    })
}

fn binary(a: Num, op: &str, b: Num) -> Result<Num, CalcError> {
    if let (Num::Int(x), Num::Int(y)) = (&a, &b) {
        return Ok(match op {
            "+" => Num::Int(x + y),
            "-" => Num::Int(x - y),
            "*" => Num::Int(x * y),
            _ if y.sign() == Sign::NoSign => return Err(ZERO_DIVISION),
            "//" => Num::Int(floor_div(x, y)),
            _ => {
                let q = ratio_to_f64(x.magnitude(), y.magnitude()).ok_or(OVERFLOW)?;
                Num::Float(if (x.sign() == Sign::Minus) != (y.sign() == Sign::Minus) { -q } else { q })
            }
        });
    }
    let (x, y) = (to_f64(a)?, to_f64(b)?);
    Ok(Num::Float(match op {
        "+" => x + y,
        "-" => x - y,
        "*" => x * y,
        _ if y == 0.0 => return Err(ZERO_DIVISION),
        "/" => x / y,
        _ => float_floor_div(x, y),
    }))
}

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

/// CPython's `float_floor_div` (via `_float_div_mod`) for a nonzero divisor.
fn float_floor_div(vx: f64, wx: f64) -> f64 {
    let m = vx % wx; // C fmod
    let mut div = (vx - m) / wx;
    if m != 0.0 && (wx < 0.0) != (m < 0.0) {
        div -= 1.0;
    }
    if div != 0.0 {
        let floordiv = div.floor();
        if div - floordiv > 0.5 {
            floordiv + 1.0
        } else {
            floordiv
        }
    } else {
        0.0f64.copysign(vx / wx)
    }
}

/// `float(x)`: an int correctly rounded (half to even), `OverflowError` past the largest double.
fn to_f64(x: Num) -> Result<f64, CalcError> {
    match x {
        Num::Float(f) => Ok(f),
        Num::Int(i) => {
            let f = ratio_to_f64(i.magnitude(), &BigUint::from(1u8)).ok_or(OVERFLOW)?;
            Ok(if i.sign() == Sign::Minus { -f } else { f })
        }
    }
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
    // q * 2^ulp, with q <= 2^53.
    let (q, ulp) = if q == 1 << 53 { (q >> 1, ulp + 1) } else { (q, ulp) };
    if q < 1 << 52 {
        return Some(f64::from_bits(q)); // subnormal (ulp == -1074) or zero
    }
    let biased = ulp + 52 + 1023;
    (biased < 2047).then(|| f64::from_bits(((biased as u64) << 52) | (q - (1 << 52))))
}

/// `str(int)`: `ValueError` past 4300 digits.
fn int_str(i: &BigInt) -> Result<String, CalcError> {
    // 10^4300 < 2^14285: more bits than that is more than 4300 digits, without converting.
    let too_long = CalcError::Raised("ValueError");
    if i.bits() > 14_290 {
        return Err(too_long);
    }
    let s = i.to_string();
    if s.trim_start_matches('-').len() > MAX_STR_DIGITS {
        return Err(too_long);
    }
    Ok(s)
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

#[cfg(test)]
mod tests {
    use super::*;

    // Every expected value below was checked with CPython 3.11.7; tests/calculator_python.rs compares
    // thousands more with the real Python.
    #[test]
    fn arithmetic_matches_python() {
        for (expr, want) in [
            ("12/60", "0.2"),
            ("10/2", "5.0"),
            ("3*4", "12"),
            ("1,000*2", "2000"),
            ("  3 * (4+1) ", "15"),
            ("-7//2", "-4"),
            ("7//-2", "-4"),
            ("-7.0//2", "-4.0"),
            ("0/-5", "-0.0"),
            ("-0.0", "-0.0"),
            ("0.1+0.2", "0.30000000000000004"),
            ("1/3", "0.3333333333333333"),
            ("10000000000000000.0", "1e+16"),
            ("0.00001", "1e-05"),
            ("5.+.5", "5.5"),
            ("00", "0"),
            ("9007199254740993/1", "9007199254740992.0"),
            ("123456789012345678901234567890*10", "1234567890123456789012345678900"),
        ] {
            assert_eq!(calculate(expr).as_deref(), Ok(want), "{expr}");
        }
    }

    #[test]
    fn errors_match_python() {
        let big = "9".repeat(400);
        for (expr, want) in [
            ("1/0", "ZeroDivisionError"),
            ("1//0.0", "ZeroDivisionError"),
            ("012", "SyntaxError"),
            ("(1+2", "SyntaxError"),
            ("1 2", "SyntaxError"),
            ("1..5", "SyntaxError"),
            ("", "SyntaxError"),
            (&format!("{big}/1"), "OverflowError"),
            (&format!("{big}*1.0"), "OverflowError"),
            (&format!("{}9", "9".repeat(4300)), "SyntaxError"),
            (&format!("{}*10", "9".repeat(4300)), "ValueError"),
        ] {
            assert_eq!(calculate(expr), Err(CalcError::Raised(want)), "{expr}");
        }
    }

    #[test]
    fn count_path() {
        assert_eq!(use_calculator("'strawberry'.count('r')").as_deref(), Some("3"));
        assert_eq!(use_calculator("\"it's\" .count( \"'\" )").as_deref(), Some("1"));
        assert_eq!(use_calculator("'a,b'.count(',')").as_deref(), Some("3")); // commas are removed first: `'ab'.count('')`
        assert_eq!(use_calculator("'abc'.count('')").as_deref(), Some("4"));
        assert_eq!(use_calculator("'aaaa'.count('aa')").as_deref(), Some("2"));
        for rejected in ["2**3", "1e5", "'dir'.count('d')", "'a-b'.count('a')", "'ab'.upper()"] {
            assert_eq!(calculate(rejected), Err(CalcError::Rejected), "{rejected}");
        }
        for unsupported in ["()", "...", "(1)(2)", "('a').count('a')", "'''a'''.count('a')", "x.count('a')"] {
            assert_eq!(calculate(unsupported), Err(CalcError::Unsupported), "{unsupported}");
        }
        let sum = vec!["1"; MAX_TOKENS / 2 + 1].join("+");
        assert_eq!(calculate(&sum), Err(CalcError::Unsupported));
        assert_eq!(calculate(&sum[2..]).as_deref(), Ok("50"));
    }

    #[test]
    fn float_repr_matches_python() {
        for (x, want) in [
            (1e16, "1e+16"),
            (1.5e300, "1.5e+300"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
            (638653894280067.0 + 0.25, "638653894280067.2"), // a tie between two shortest strings: the even one
            (f64::INFINITY, "inf"),
            (f64::NAN, "nan"),
        ] {
            assert_eq!(float_repr(x), want);
        }
    }
}
