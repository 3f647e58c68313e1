//! An eval bundle as the reference's `base_eval.py` reads it (NANOCHAT.md §6.1): `core.yaml` lists
//! the tasks (`icl_tasks`: `label`, `dataset_uri` under `eval_data/`, `num_fewshot` (a list, its
//! first element used), `icl_task_type`, `continuation_delimiter` (default `" "`)),
//! `eval_meta_data.csv` gives each task's `Random baseline` (percent) by `Eval Task`, and each
//! task's examples are one JSON object per line. The examples are shuffled with
//! `random.Random(1337)` before the crop to `max_per_task`.
//!
//! Template fields are rendered as Jinja does, with Python's `str()`: strings as they are, numbers as
//! Python prints them, `True`/`False`/`None`.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::CoreError;
use crate::pyrandom::python::PyRandom;

/// The random baselines inside a bundle directory.
pub const META_CSV: &str = "eval_meta_data.csv";
/// The directory of the examples inside a bundle directory (`dataset_uri` is relative to it).
pub const DATA_DIR: &str = "eval_data";
/// Seed of the shuffle before the crop (§6.1, §14.18).
pub const SHUFFLE_SEED: i64 = 1337;
/// The delimiter when `core.yaml` names none (§6.1).
pub const DEFAULT_DELIMITER: &str = " ";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskType {
    MultipleChoice,
    Schema,
    LanguageModeling,
}

impl TaskType {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "multiple_choice" => Some(TaskType::MultipleChoice),
            "schema" => Some(TaskType::Schema),
            "language_modeling" => Some(TaskType::LanguageModeling),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TaskType::MultipleChoice => "multiple_choice",
            TaskType::Schema => "schema",
            TaskType::LanguageModeling => "language_modeling",
        }
    }
}

/// One task of `core.yaml` with its random baseline.
#[derive(Clone, Debug, PartialEq)]
pub struct CoreTask {
    pub label: String,
    pub task_type: TaskType,
    /// Path of the examples under `eval_data/`.
    pub dataset_uri: String,
    pub num_fewshot: usize,
    pub delimiter: String,
    /// Accuracy of guessing, in percent (eval_meta_data.csv).
    pub random_baseline: f64,
}

impl CoreTask {
    /// `(acc − b) / (1 − b)` with b the random baseline as a fraction (§6.1).
    pub fn centered(&self, accuracy: f64) -> f64 {
        let b = 0.01 * self.random_baseline;
        (accuracy - b) / (1.0 - b)
    }
}

/// One example, its fields already rendered as the templates print them.
#[derive(Clone, Debug, PartialEq)]
pub enum CoreExample {
    /// `query`, `choices`, `gold` (index of the right choice).
    MultipleChoice { query: String, choices: Vec<String>, gold: usize },
    /// `context_options`, `continuation`, `gold` (index of the right context).
    Schema { context_options: Vec<String>, continuation: String, gold: usize },
    /// `context`, `continuation`.
    LanguageModeling { context: String, continuation: String },
}

/// What is wrong with one example of a task.
#[derive(Debug, thiserror::Error)]
pub enum ExampleError {
    #[error("no `{0}` field")]
    Missing(String),
    #[error("`{0}` is not a list")]
    NotAList(String),
    #[error("`{0}`: a list or object where text is expected")]
    NotText(String),
    #[error("`gold` is not a non-negative integer")]
    BadGold,
    #[error("`gold` is {gold} but there are {options} options")]
    GoldOutOfRange { gold: u64, options: usize },
    #[error("expected two prompts")]
    NotTwoPrompts,
    #[error("the tokens of the prompt without the continuation are not a strict prefix of those with it")]
    NotAPrefix,
}

impl CoreExample {
    /// The example of a task of type `task_type` in one JSON object.
    pub fn from_json(task_type: TaskType, item: &Value) -> Result<Self, ExampleError> {
        let text = |key: &str| {
            let value = item.get(key).ok_or_else(|| ExampleError::Missing(key.into()))?;
            python_str(value).ok_or_else(|| ExampleError::NotText(key.into()))
        };
        let texts = |key: &str| -> Result<Vec<String>, ExampleError> {
            let list = item.get(key).and_then(Value::as_array).ok_or_else(|| ExampleError::NotAList(key.into()))?;
            list.iter().map(|v| python_str(v).ok_or_else(|| ExampleError::NotText(key.into()))).collect()
        };
        let gold = |options: usize| {
            let gold = item.get("gold").and_then(Value::as_u64).ok_or(ExampleError::BadGold)?;
            if gold as usize >= options {
                return Err(ExampleError::GoldOutOfRange { gold, options });
            }
            Ok(gold as usize)
        };
        Ok(match task_type {
            TaskType::MultipleChoice => {
                let choices = texts("choices")?;
                CoreExample::MultipleChoice { query: text("query")?, gold: gold(choices.len())?, choices }
            }
            TaskType::Schema => {
                let context_options = texts("context_options")?;
                CoreExample::Schema {
                    continuation: text("continuation")?,
                    gold: gold(context_options.len())?,
                    context_options,
                }
            }
            TaskType::LanguageModeling => {
                CoreExample::LanguageModeling { context: text("context")?, continuation: text("continuation")? }
            }
        })
    }
}

/// A bundle directory: its tasks in `core.yaml` order.
#[derive(Clone, Debug)]
pub struct CoreBundle {
    pub dir: PathBuf,
    pub tasks: Vec<CoreTask>,
}

impl CoreBundle {
    /// Reads `core.yaml` and `eval_meta_data.csv` of `dir`.
    pub fn open(dir: &Path) -> Result<Self, CoreError> {
        let yaml_path = dir.join(crate::download::eval_bundle::CORE_YAML);
        let csv_path = dir.join(META_CSV);
        let baselines = random_baselines(&csv_path, &read_text(&csv_path)?)?;
        let tasks = parse_core_yaml(&yaml_path, &read_text(&yaml_path)?, &baselines)?;
        Ok(CoreBundle { dir: dir.to_path_buf(), tasks })
    }

    /// Where a task's examples are.
    pub fn data_path(&self, task: &CoreTask) -> PathBuf {
        self.dir.join(DATA_DIR).join(&task.dataset_uri)
    }

    /// A task's examples: every line, shuffled with Random(1337), the first `max_per_task` kept
    /// (all when None).
    pub fn examples(&self, task: &CoreTask, max_per_task: Option<usize>) -> Result<Vec<CoreExample>, CoreError> {
        let path = self.data_path(task);
        let text = read_text(&path)?;
        let mut items = Vec::new();
        for (number, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let bad = |message: String| CoreError::Format { path: path.clone(), message };
            let value: Value =
                serde_json::from_str(line.trim()).map_err(|e| bad(format!("line {}: {e}", number + 1)))?;
            items.push(
                CoreExample::from_json(task.task_type, &value).map_err(|e| bad(format!("line {}: {e}", number + 1)))?,
            );
        }
        PyRandom::new(SHUFFLE_SEED).shuffle(&mut items);
        if let Some(max) = max_per_task {
            items.truncate(max);
        }
        Ok(items)
    }
}

fn read_text(path: &Path) -> Result<String, CoreError> {
    std::fs::read_to_string(path).map_err(|source| CoreError::Read { path: path.to_path_buf(), source })
}

/// The tasks of `core.yaml`, each with its baseline from `baselines`.
fn parse_core_yaml(path: &Path, text: &str, baselines: &HashMap<String, f64>) -> Result<Vec<CoreTask>, CoreError> {
    use serde_yaml_ng::Value as Yaml;
    let bad = |message: String| CoreError::Format { path: path.to_path_buf(), message };
    let root: Yaml = serde_yaml_ng::from_str(text).map_err(|e| bad(e.to_string()))?;
    let entries = root.get("icl_tasks").and_then(Yaml::as_sequence).ok_or_else(|| bad("no `icl_tasks` list".into()))?;
    let mut tasks = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let field = |key: &str| -> Result<String, CoreError> {
            let value = entry.get(key).ok_or_else(|| bad(format!("task {} has no `{key}`", i + 1)))?;
            yaml_str(value).ok_or_else(|| bad(format!("task {}: `{key}` is not a plain value", i + 1)))
        };
        let label = field("label")?;
        let type_name = field("icl_task_type")?;
        let task_type = TaskType::parse(&type_name).ok_or_else(|| {
            bad(format!("{label}: icl_task_type {type_name:?} is not multiple_choice, schema or language_modeling"))
        })?;
        let shots = match entry.get("num_fewshot") {
            Some(Yaml::Sequence(list)) => list.first().and_then(Yaml::as_u64),
            Some(other) => other.as_u64(),
            None => None,
        };
        let num_fewshot = shots.ok_or_else(|| bad(format!("{label}: `num_fewshot` is not a list of counts")))?;
        let delimiter = match entry.get("continuation_delimiter") {
            Some(value) => {
                yaml_str(value).ok_or_else(|| bad(format!("{label}: `continuation_delimiter` is not a plain value")))?
            }
            None => DEFAULT_DELIMITER.to_string(),
        };
        let random_baseline = *baselines.get(&label).ok_or_else(|| {
            bad(format!("{label} has no row in {META_CSV} (its `Eval Task` column must name every task)"))
        })?;
        tasks.push(CoreTask {
            dataset_uri: field("dataset_uri")?,
            label,
            task_type,
            num_fewshot: num_fewshot as usize,
            delimiter,
            random_baseline,
        });
    }
    Ok(tasks)
}

/// Python's `str()` of a YAML scalar (what the template prints).
fn yaml_str(value: &serde_yaml_ng::Value) -> Option<String> {
    python_str(&serde_json::to_value(value).ok()?)
}

/// `Random baseline` by `Eval Task` (csv.DictReader; a later row of the same task wins).
fn random_baselines(path: &Path, text: &str) -> Result<HashMap<String, f64>, CoreError> {
    let bad = |message: String| CoreError::Format { path: path.to_path_buf(), message };
    let mut rows = parse_csv(text.strip_prefix('\u{feff}').unwrap_or(text)).into_iter();
    let header = rows.next().ok_or_else(|| bad("empty file".into()))?;
    let column = |name: &str| header.iter().position(|h| h == name).ok_or_else(|| bad(format!("no `{name}` column")));
    let (task_col, baseline_col) = (column("Eval Task")?, column("Random baseline")?);
    let mut baselines = HashMap::new();
    for row in rows.filter(|r| !r.is_empty()) {
        let (Some(task), Some(baseline)) = (row.get(task_col), row.get(baseline_col)) else {
            return Err(bad(format!("row {row:?} has fewer columns than the header")));
        };
        let value: f64 = baseline
            .trim()
            .parse()
            .map_err(|_| bad(format!("{task}: `Random baseline` {baseline:?} is not a number")))?;
        baselines.insert(task.clone(), value);
    }
    Ok(baselines)
}

/// Rows of a CSV text as Python's csv module reads it (excel dialect): `,`-separated, fields in
/// double quotes may hold commas, newlines and doubled quotes; a blank line is an empty row.
pub fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row: Vec<String> = Vec::new();
    let mut field = String::new();
    let (mut quoted, mut in_quotes, mut row_has_data) = (false, false, false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() && !quoted => {
                (quoted, in_quotes, row_has_data) = (true, true, true);
            }
            ',' => {
                row.push(std::mem::take(&mut field));
                (quoted, row_has_data) = (false, true);
            }
            '\r' | '\n' => {
                if c == '\r' && chars.peek() == Some(&'\n') {
                    chars.next();
                }
                if row_has_data || !field.is_empty() {
                    row.push(std::mem::take(&mut field));
                }
                rows.push(std::mem::take(&mut row));
                (quoted, row_has_data) = (false, false);
            }
            _ => {
                field.push(c);
                row_has_data = true;
            }
        }
    }
    if row_has_data || !field.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

/// Python's `str()` of a JSON value inside a template: strings unchanged, numbers as Python prints
/// them, `True`, `False`, `None`. Lists and objects have none (`None`).
pub fn python_str(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Null => Some("None".into()),
        Value::Bool(b) => Some(if *b { "True" } else { "False" }.into()),
        Value::Number(n) => Some(match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) => python_float_repr(f),
            _ => n.to_string(),
        }),
        Value::Array(_) | Value::Object(_) => None,
    }
}

/// Python's `repr(float)`: the shortest round-trip digits, positional for exponents −4..15
/// (with `.0` when integral), else `d.ddde±XX`.
pub fn python_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.into();
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "-1.2345e-7".
    let sci = format!("{f:e}");
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (sign, mantissa) = mantissa.strip_prefix('-').map_or(("", mantissa), |m| ("-", m));
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    if (-4..16).contains(&exponent) {
        let point = exponent + 1;
        let body = if point <= 0 {
            format!("0.{}{digits}", "0".repeat((-point) as usize))
        } else if point as usize >= digits.len() {
            format!("{digits}{}.0", "0".repeat(point as usize - digits.len()))
        } else {
            format!("{}.{}", &digits[..point as usize], &digits[point as usize..])
        };
        format!("{sign}{body}")
    } else {
        let tail = if digits.len() > 1 { format!(".{}", &digits[1..]) } else { String::new() };
        format!("{sign}{}{tail}e{}{:02}", &digits[..1], if exponent < 0 { '-' } else { '+' }, exponent.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_python_repr() {
        let cases = [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (123456789012345.0, "123456789012345.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.25e-7, "1.25e-07"),
            (0.0, "0.0"),
            (2.71, "2.71"),
        ];
        for (f, want) in cases {
            assert_eq!(python_float_repr(f), want, "{f}");
        }
        assert_eq!(python_str(&serde_json::json!(7)).unwrap(), "7");
        assert_eq!(python_str(&serde_json::json!(true)).unwrap(), "True");
        assert_eq!(python_str(&serde_json::json!(null)).unwrap(), "None");
        assert!(python_str(&serde_json::json!([1])).is_none());
    }

    #[test]
    fn csv_reads_quoted_commas_newlines_and_doubled_quotes() {
        let text = "Eval Task,Random baseline,Description\r\na,25,\"x, y\"\n\nb,0,\"say \"\"hi\"\"\nthere\"\n";
        let rows = parse_csv(text);
        assert_eq!(rows[0], ["Eval Task", "Random baseline", "Description"]);
        assert_eq!(rows[1], ["a", "25", "x, y"]);
        assert!(rows[2].is_empty(), "a blank line is an empty row");
        assert_eq!(rows[3], ["b", "0", "say \"hi\"\nthere"]);
        assert_eq!(rows.len(), 4);
        assert_eq!(parse_csv("a,,\n"), [vec!["a", "", ""]]);
        let baselines = random_baselines(Path::new("m.csv"), text).unwrap();
        assert_eq!(baselines["a"], 25.0);
        assert_eq!(baselines["b"], 0.0);
    }

    #[test]
    fn core_yaml_reads_like_the_reference() {
        let yaml = "icl_tasks:\n-\n  label: mc\n  dataset_uri: x/mc.jsonl\n  num_fewshot: [10]\n  icl_task_type: multiple_choice\n  continuation_delimiter: \"\\nAnswer: \" # comment\n- label: lm\n  dataset_uri: lm.jsonl\n  num_fewshot: [0, 5]\n  icl_task_type: language_modeling\n";
        let baselines = HashMap::from([("mc".to_string(), 25.0), ("lm".to_string(), 0.0)]);
        let tasks = parse_core_yaml(Path::new("core.yaml"), yaml, &baselines).unwrap();
        assert_eq!(tasks[0].delimiter, "\nAnswer: ");
        assert_eq!(tasks[0].num_fewshot, 10);
        assert_eq!(tasks[0].task_type, TaskType::MultipleChoice);
        assert_eq!((tasks[1].num_fewshot, tasks[1].delimiter.as_str()), (0, " "));
        assert!((tasks[0].centered(0.5) - 1.0 / 3.0).abs() < 1e-12);
        let missing = parse_core_yaml(Path::new("core.yaml"), yaml, &HashMap::new()).unwrap_err().to_string();
        assert!(missing.contains("mc has no row in eval_meta_data.csv"), "{missing}");
        let bad_type = yaml.replace("language_modeling", "generation");
        assert!(parse_core_yaml(Path::new("c"), &bad_type, &baselines).unwrap_err().to_string().contains("generation"));
    }

    #[test]
    fn examples_check_their_fields() {
        let mc = serde_json::json!({"query": "Q", "choices": ["a", 2], "gold": 1});
        assert_eq!(
            CoreExample::from_json(TaskType::MultipleChoice, &mc).unwrap(),
            CoreExample::MultipleChoice { query: "Q".into(), choices: vec!["a".into(), "2".into()], gold: 1 }
        );
        let out_of_range = serde_json::json!({"query": "Q", "choices": ["a"], "gold": 1});
        assert!(CoreExample::from_json(TaskType::MultipleChoice, &out_of_range)
            .unwrap_err()
            .to_string()
            .contains("gold"));
        let lm = serde_json::json!({"context": "c"});
        assert!(CoreExample::from_json(TaskType::LanguageModeling, &lm)
            .unwrap_err()
            .to_string()
            .contains("continuation"));
    }
}
