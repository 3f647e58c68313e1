//! The calculator tool (NANOCHAT.md §7) against the real Python: thousands of seeded random expressions of
//! the two forms the model emits — arithmetic with small, big, comma-separated and zero-padded ints, floats,
//! every operator, unary signs, parentheses and malformed text, and `'word'.count('x')` with both quotes,
//! spaces, commas, forbidden words, refused characters and malformed text — plus fixed edge cases (float
//! rounding, huge ints, the 4300-digit limits), are evaluated in one batch by a Python script that applies
//! the reference's `use_calculator` rules, and compared one by one: the value's `str()`, or the filters'
//! rejection, or the exception's class. Where ours gives no output as unsupported, Python must give none
//! either; what Python evaluates and ours does not (`()`, `...`, other string forms, long expressions) is
//! the second test.
//!
//! The interpreter is `$NANOCHAT_CALC_PYTHON`, else `python3.11` on PATH (Debian 12's python3): the
//! calculator follows CPython 3.11 whichever Python made the venv, and the script refuses another version.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use nanochat::engine::calculator::{calculate, use_calculator, CalcError, MAX_TOKENS};

/// The reference's `use_calculator` ([A'] 10231df) and `eval_with_timeout` without the alarm, reporting
/// which way it returns nothing: `["ok", str(value)]`, `["none"]`, `["rejected"]` or `["exc", class]`
/// (`str()` itself raises `ValueError` past 4300 digits, which the engine would not survive).
const REFERENCE: &str = r#"
import json, sys, warnings

if sys.version_info[:2] != (3, 11):
    sys.exit(f"the calculator follows CPython 3.11, and this is {sys.version}")

def eval_with_timeout(formula):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ("value", eval(formula, {"__builtins__": {}}, {}))
    except Exception as e:
        return ("exc", type(e).__name__)

def use_calculator(expr):
    expr = expr.replace(",", "")
    if all([x in "0123456789*+-/.() " for x in expr]):
        if "**" in expr:
            return ("rejected",)
        return eval_with_timeout(expr)
    allowed_chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'\"()._ "
    if not all([x in allowed_chars for x in expr]):
        return ("rejected",)
    dangerous_patterns = ['__', 'import', 'exec', 'eval', 'compile', 'open', 'file',
                          'input', 'raw_input', 'globals', 'locals', 'vars', 'dir',
                          'getattr', 'setattr', 'delattr', 'hasattr']
    expr_lower = expr.lower()
    if any(pattern in expr_lower for pattern in dangerous_patterns):
        return ("rejected",)
    if '.count(' not in expr:
        return ("rejected",)
    return eval_with_timeout(expr)

out = []
for expr in json.load(sys.stdin):
    r = use_calculator(expr)
    if r[0] == "value":
        if r[1] is None:
            r = ("none",)
        else:
            try:
                r = ("ok", str(r[1]))
            except Exception as e:
                r = ("exc", type(e).__name__)
    out.append(list(r))
json.dump(out, sys.stdout)
"#;

fn python() -> PathBuf {
    std::env::var_os("NANOCHAT_CALC_PYTHON").map_or_else(|| PathBuf::from("python3.11"), PathBuf::from)
}

/// Python's outcome for every expression, in order.
fn python_outcomes(exprs: &[String]) -> Vec<Vec<String>> {
    let py = python();
    let mut child = Command::new(&py)
        .args(["-c", REFERENCE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {} ({e}): install CPython 3.11 or set NANOCHAT_CALC_PYTHON", py.display())
        });
    let input = serde_json::to_vec(exprs).expect("JSON of strings");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().expect("wait for python");
    // A Python that exits early (the wrong version) breaks the pipe: its own message comes first.
    let written = writer.join().expect("writer thread");
    assert!(
        output.status.success(),
        "{} failed ({}): it must be a CPython 3.11 (python3.11 on PATH, or NANOCHAT_CALC_PYTHON)\n{}",
        py.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    written.expect("write to python");
    serde_json::from_slice(&output.stdout).expect("python prints a JSON list")
}

fn rust_outcome(expr: &str) -> Vec<String> {
    let outcome = match calculate(expr) {
        Ok(s) => vec!["ok".to_string(), s],
        Err(CalcError::Rejected) => vec!["rejected".to_string()],
        Err(CalcError::Raised(class)) => vec!["exc".to_string(), class.to_string()],
        Err(CalcError::Unsupported) => vec!["unsupported".to_string()],
    };
    // The engine's view must agree with the detailed one.
    assert_eq!(use_calculator(expr), if outcome[0] == "ok" { Some(outcome[1].clone()) } else { None }, "{expr}");
    outcome
}

/// Whether the text has neither of the arithmetic atoms left to the second test: `()` (spaces allowed
/// inside) and `...`.
fn evaluated_here(expr: &str) -> bool {
    let packed = expr.replace(' ', "");
    !packed.contains("()") && !packed.contains("...")
}

/// xorshift64*: a small seeded generator, so every run tests the same expressions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    fn digits(&mut self, n: usize) -> String {
        let mut s: String = (0..n).map(|_| char::from(b'0' + self.below(10) as u8)).collect();
        if n > 1 && s.starts_with('0') {
            s.replace_range(0..1, "7");
        }
        s
    }

    /// `lo + below(spread)` random digits.
    fn digits_up(&mut self, lo: usize, spread: usize) -> String {
        let n = lo + self.below(spread);
        self.digits(n)
    }

    fn space(&mut self) -> &'static str {
        if self.one_in(3) {
            " "
        } else {
            ""
        }
    }
}

// ---- arithmetic path ----------------------------------------------------------------------------------

fn with_thousands_commas(digits: &str) -> String {
    let mut out = String::new();
    for (k, c) in digits.chars().enumerate() {
        if k > 0 && (digits.len() - k).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn arith_number(rng: &mut Rng) -> String {
    match rng.below(20) {
        0..=4 => rng.below(100).to_string(),
        5..=6 => rng.below(1_000_000).to_string(),
        7 => {
            let n = 10 + rng.below(50);
            rng.digits(n)
        }
        8 => {
            // Beyond the largest double (about 1.8e308).
            let n = 300 + rng.below(30);
            rng.digits(n)
        }
        9 => {
            let n = 4 + rng.below(12);
            with_thousands_commas(&rng.digits(n))
        }
        10 => {
            let zeros = 1 + rng.below(3);
            format!("{}{}", "0".repeat(zeros), rng.below(100))
        }
        11 => format!("{}.{}", rng.below(1000), rng.digits_up(1, 4)),
        12 => format!(".{}", rng.digits_up(1, 6)),
        13 => format!("{}.", rng.below(1000)),
        14 => format!("0{}.{}", rng.below(10), rng.digits_up(1, 3)),
        15 => {
            let n = 1 + rng.below(25);
            format!("{}.{}", rng.digits(n), rng.digits_up(1, 20))
        }
        16 => {
            // Tiny floats, down to the subnormals.
            let zeros = rng.pick(&["5", "20", "300", "310", "320", "323", "330"]).parse::<usize>().unwrap_or(5);
            format!("0.{}{}", "0".repeat(zeros), rng.digits_up(1, 3))
        }
        17 => format!("{}.0", rng.digits_up(300, 20)),
        18 => rng.pick(&["0", "00", "0.0", "1", "2", "10"]).to_string(),
        _ => {
            let n = 1 + rng.below(6);
            let mut s = rng.digits(n);
            let at = rng.below(s.len() + 1);
            s.insert(at, ',');
            s
        }
    }
}

fn arith_expr(rng: &mut Rng, depth: usize) -> String {
    let choice = if depth == 0 { 0 } else { rng.below(10) };
    match choice {
        0..=2 => arith_number(rng),
        3 => format!("{}{}", rng.pick(&["-", "+", "--", "-+", "- ", "+-+"]), arith_expr(rng, depth - 1)),
        4 => format!("({}{}{})", rng.space(), arith_expr(rng, depth - 1), rng.space()),
        _ => {
            let op = rng.pick(&["+", "-", "*", "/", "//", "*", "/"]);
            let (a, b) = (arith_expr(rng, depth - 1), arith_expr(rng, depth - 1));
            let (s1, s2) = (rng.space(), rng.space());
            format!("{a}{s1}{op}{s2}{b}")
        }
    }
}

/// A random edit: characters inserted, removed or doubled.
fn mutate(rng: &mut Rng, s: &str, alphabet: &[&str]) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    for _ in 0..1 + rng.below(2) {
        let at = rng.below(chars.len() + 1);
        match rng.below(3) {
            0 => {
                let c = rng.pick(alphabet);
                for (k, ch) in c.chars().enumerate() {
                    chars.insert(at + k, ch);
                }
            }
            1 if at < chars.len() => {
                chars.remove(at);
            }
            _ if at < chars.len() => {
                let c = chars[at];
                chars.insert(at, c);
            }
            _ => {}
        }
    }
    chars.into_iter().collect()
}

fn arithmetic_case(rng: &mut Rng) -> String {
    if rng.one_in(12) {
        // Quotients with few binary digits: decimal ties that `repr` must round to even.
        let n = rng.digits_up(15, 5);
        return format!("{n}/{}", 1u64 << (1 + rng.below(12)));
    }
    let depth = 1 + rng.below(4);
    let e = arith_expr(rng, depth);
    if rng.one_in(8) {
        let m = mutate(rng, &e, &["1", "0", ".", "*", "/", "+", "-", "(", ")", " ", ",", "**", "//"]);
        if evaluated_here(&m) {
            return m;
        }
    }
    e
}

// ---- the .count path ----------------------------------------------------------------------------------

const WORDS: [&str; 26] = [
    "strawberry",
    "banana",
    "Mississippi",
    "hello world",
    "raspberry",
    "bookkeeper",
    "committee",
    "a",
    "",
    "aaa",
    "abc",
    "Letter",
    "PYTHON",
    "tomato",
    "balloon",
    "assess",
    "x_y_z",
    "count",
    "o.o",
    "(paren)",
    "A B C",
    "supercalifragilistic",
    "  spaced  ",
    "r2d2",
    "it's",
    ".count(",
];

fn random_word(rng: &mut Rng) -> String {
    if rng.below(3) > 0 {
        return rng.pick(&WORDS).to_string();
    }
    let len = rng.below(10);
    (0..len)
        .map(|_| {
            let pool = if rng.one_in(6) { "ABCDEFG _.()019\"" } else { "abcdeilnorstuy" };
            let k = rng.below(pool.len());
            pool.as_bytes()[k] as char
        })
        .collect()
}

/// A string literal in random quotes, the other one where the text holds a quote.
fn string_literal(rng: &mut Rng, content: &str) -> String {
    let quote = if content.contains('\'') || (!content.contains('"') && rng.one_in(2)) { '"' } else { '\'' };
    format!("{quote}{content}{quote}")
}

fn needle(rng: &mut Rng, word: &str) -> String {
    match rng.below(8) {
        0 => random_word(rng),
        1 => String::new(),
        2 => rng.pick(&["an", "ss", "rr", "ana", "issi", "aa", "ll", "o.o"]).to_string(),
        3 => rng.pick(&["R", "A", " ", "_", ".", "(", "'", "x"]).to_string(),
        _ if !word.is_empty() => {
            let k = rng.below(word.len());
            word[k..=k].to_string()
        }
        _ => "a".to_string(),
    }
}

fn count_case(rng: &mut Rng) -> String {
    let word = random_word(rng);
    let sub = needle(rng, &word);
    let (hay, sub) = (string_literal(rng, &word), string_literal(rng, &sub));
    let (s1, s2, s3, s4) = (rng.space(), rng.space(), rng.space(), rng.space());
    let e = format!("{s1}{hay}{s2}.count({s3}{sub}{s4}){}", rng.space());
    match rng.below(14) {
        0 => {
            // A forbidden word (in any case) in the literal.
            let bad =
                rng.pick(&["directory", "open", "profile", "evaluate", "inputs", "vars", "a__b", "Dir", "IMPORT"]);
            format!("{}.count('r')", string_literal(rng, bad))
        }
        1 => {
            // Commas, which the reference removes anywhere.
            let mut chars: Vec<char> = e.chars().collect();
            for _ in 0..1 + rng.below(2) {
                let at = rng.below(chars.len() + 1);
                chars.insert(at, ',');
            }
            chars.into_iter().collect()
        }
        2 => {
            let method = rng.pick(&[".count ('a')", ". count('a')", ".upper()", ".counts('a')"]);
            format!("{}{method}", string_literal(rng, "banana"))
        }
        3 => {
            let refused = rng.pick(&["café", "a-b", "a+b", "why?", "a\tb"]);
            format!("{}.count('a')", string_literal(rng, refused))
        }
        4 => mutate(rng, &e, &["'", "\"", "(", ")", ".", " ", "a", "1", "-", "?", "_"]),
        _ => e,
    }
}

// ---- arithmetic token soup: random token sequences, mostly malformed, for the tokenizer and the parser ---

const SOUP: &[&str] = &[
    "1",
    "2",
    "0",
    "00",
    "07",
    "12",
    "1.5",
    ".5",
    "5.",
    "0.0",
    "123456789012345678901",
    "1,000",
    "+",
    "-",
    "*",
    "/",
    "//",
    "(",
    ")",
    "(",
    ")",
    "(2)",
    "(1.5)",
    ".",
];

fn soup_case(rng: &mut Rng) -> String {
    loop {
        let mut s = String::new();
        for _ in 0..1 + rng.below(9) {
            s.push_str(rng.pick(SOUP));
            s.push_str(rng.pick(&["", "", " "]));
        }
        if evaluated_here(&s) {
            return s;
        }
    }
}

// ---- fixed edge cases ---------------------------------------------------------------------------------

fn edge_cases() -> Vec<String> {
    let mut v: Vec<String> = [
        "12/60",
        "10/2",
        "3*4",
        "1,000*2",
        "2**3",
        "1/0",
        "1//0",
        "1.0/0",
        "1//0.0",
        "0.0/0.0",
        "'strawberry'.count('r')",
        "\"a,b\".count(\",\")",
        "0.1+0.2",
        "7//2",
        "-7//2",
        "7//-2",
        "7.0//2",
        "-7.0//2",
        "7.5//-2",
        "1e5",
        "0/-5",
        "-0/5",
        "-0.0",
        "0.0*-1",
        "1/3",
        "2/3*3",
        "10000000000000000.0",
        "1000000000000000.0",
        "0.00001",
        "0.0001",
        "5.",
        ".5",
        "00.5",
        "00",
        "0",
        "012",
        "012.",
        "1.2.3",
        "1 2",
        "(1+2",
        "1+2)",
        "",
        "   ",
        "- - -1",
        "+-+-3",
        "  3*4",
        "(1)(2)",
        "(1)(1/0)",
        "1 (2",
        "(1).",
        "(1)(*1)",
        "1 .5",
        "1..5",
        "1....5",
        "3/ /2",
        "3 //2",
        "1///2",
        "9007199254740993/1",
        "9007199254740995/1",
        "9007199254740993*1.0",
        "1/9007199254740993",
        "0.5//0.1",
        "1//0.1",
        "-1//0.1",
        "1.0//-0.0",
        "0.0//1",
        "-0.0//1",
        "0.0//-1",
        "'abc'.count('a'",
        "'abc.count('a')",
        "'abc'.count(a')",
        "'abc'.count('a')'",
        "''.count('')",
        "''.count('a')",
        "'''.count('a')",
        "'dir'.count('d')",
        "'a-b'.count('a')",
        "x.count('a')",
        "'x'.__class__.count('x')",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Huge numbers: beyond a double, the 4300-digit limits, correctly rounded division.
    let big = "1".repeat(400);
    let limit = "9".repeat(4300);
    v.extend([
        format!("{big}/1"),
        format!("{big}*1.0"),
        format!("{big}.0"),
        format!("{big}.0*0"),
        format!("{big}.0-{big}.0"),
        format!("{big}//{big}"),
        format!("{big}/{big}1"),
        format!("{big}1/{big}"),
        format!("1/{big}"),
        format!("-1/{big}{big}"),
        format!("1/1{}", "0".repeat(320)),
        format!("-3/1{}", "0".repeat(323)),
        format!("1/2{}", "0".repeat(323)),
        format!("{big}//0.5"),
        format!("0.5//{big}"),
        format!("{big}/0"),
        format!("{big}/0.0"),
        format!("{big}//0"),
        format!("1{}.0*10", "0".repeat(307)),
        format!("1{}.0+1{}.0", "0".repeat(307), "0".repeat(307)),
        format!("1{}.0*10//1", "0".repeat(307)),
        limit.clone(),
        format!("{limit}9"),
        format!("{limit}*10"),
        format!("-{limit}"),
        format!("{limit}*{limit}//{limit}"),
        format!("0{limit}"),
        "0".repeat(5000),
    ]);
    // 2**1024 - 2**970 is halfway between the largest double and 2**1024: it overflows; one less does not.
    let halfway = "179769313486231580793728971405303415079934132710037826936173778980444968292764750946649017977587207096330286416692887910946555547851940402630657488671505820681908902000708383676273854845817711531764475730270069855571366959622842914819860834936475292719074168444365510704342711559699508093042880177904174497792";
    v.push(format!("{halfway}/1"));
    v.push(format!("{halfway}*1.0"));
    v.push(format!("{}/1", halfway.replace("792", "791")));
    // The longest evaluated: 49 nested parentheses, 50 terms.
    v.push(format!("{}1{}", "(".repeat(49), ")".repeat(49)));
    v.push(format!("{}-1{}", "(".repeat(48), ")".repeat(48)));
    v.push(vec!["1"; MAX_TOKENS / 2].join("+"));
    v.push(vec!["2"; MAX_TOKENS / 2].join("/"));
    v
}

#[test]
fn calculator_agrees_with_python() {
    let mut rng = Rng(0x6e61_6e6f_6368_6174); // "nanochat"
    let mut exprs = edge_cases();
    exprs.extend((0..3000).map(|_| arithmetic_case(&mut rng)));
    let counts = exprs.len()..exprs.len() + 2000;
    exprs.extend((0..2000).map(|_| count_case(&mut rng)));
    exprs.extend((0..1000).map(|_| soup_case(&mut rng)));
    let want = python_outcomes(&exprs);
    assert_eq!(want.len(), exprs.len());
    let mut mismatches = Vec::new();
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    for (k, (expr, want)) in exprs.iter().zip(&want).enumerate() {
        let kind = match want[0].as_str() {
            "exc" => want[1].clone(),
            "ok" if counts.contains(&k) => "ok count".to_string(),
            "ok" if want[1].parse::<i64>().is_ok() => "ok int".to_string(),
            "ok" if want[1].parse::<f64>().is_ok() || ["inf", "-inf", "nan"].contains(&want[1].as_str()) => {
                "ok float".to_string()
            }
            other => other.to_string(),
        };
        *kinds.entry(kind).or_default() += 1;
        let got = rust_outcome(expr);
        // Unsupported is no output: Python must give none either, past the filters.
        if &got != want && !(got[0] == "unsupported" && ["exc", "none"].contains(&want[0].as_str())) {
            mismatches.push(format!("{:?}\n    python: {want:?}\n    rust:   {got:?}", truncate(expr)));
        }
    }
    eprintln!("{} expressions compared with Python; outcomes: {kinds:?}", exprs.len());
    for m in mismatches.iter().take(40) {
        eprintln!("MISMATCH {m}");
    }
    assert!(mismatches.is_empty(), "{} of {} expressions differ from Python", mismatches.len(), exprs.len());
    // The generators must reach every kind of outcome.
    for kind in
        ["ok int", "ok float", "ok count", "rejected", "SyntaxError", "TypeError", "ZeroDivisionError", "OverflowError"]
    {
        assert!(kinds.get(kind).copied().unwrap_or(0) >= 10, "too few {kind} cases: {kinds:?}");
    }
}

/// What Python evaluates and ours leaves without output, as the calculator's module doc lists it.
#[test]
fn unsupported_gives_no_output_where_python_has_a_value() {
    let exprs: Vec<String> = [
        "()",
        "( )*3",
        "...",
        "(...)",
        "('abc').count('a')",
        "'ab' 'c'.count('a')",
        "r'abc'.count('a')",
        "'''abc'''.count('a')",
        "'abc'.upper().count('A')",
        "'abab'.count('a' 'b')",
        "'abc'.count('a').real",
        "'abc'.count('a') and 'b'",
        "'a b a'.split().count('a')",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("{}1{}", "(".repeat(50), ")".repeat(50)), vec!["1"; MAX_TOKENS / 2 + 1].join("+")])
    .collect();
    let want = python_outcomes(&exprs);
    for (expr, want) in exprs.iter().zip(&want) {
        assert_eq!(want[0], "ok", "Python has a value for {expr:?}: {want:?}");
        assert_eq!(rust_outcome(expr), ["unsupported"], "{expr:?}");
    }
}

fn truncate(s: &str) -> String {
    if s.len() <= 300 {
        s.to_string()
    } else {
        format!("{}...({} chars)", &s[..300], s.len())
    }
}
