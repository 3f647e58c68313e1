//! Report sections: each stage writes its results as `report/<slug>.json` (NANOCHAT.md §8.2 `log`),
//! and `report generate` renders whatever sections exist.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Canonical section order (§8.2); sections not listed here follow in alphabetical order.
pub const SECTION_ORDER: &[&str] = &[
    "hardware-check",
    "data",
    "tokenizer-training",
    "tokenizer-evaluation",
    "base-model-training",
    "base-model-loss",
    "base-model-evaluation",
    "midtraining",
    "chat-evaluation-mid",
    "chat-sft",
    "chat-evaluation-sft",
    "chat-rl",
    "chat-evaluation-rl",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    /// Rendered as `- key: value` (floats with 4 decimals, large integers with separators).
    Value { key: String, value: Value },
    /// Rendered verbatim (tables, sample text).
    Markdown { text: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportSection {
    pub title: String,
    /// Local time, "YYYY-MM-DD HH:MM:SS".
    pub timestamp: String,
    pub entries: Vec<Entry>,
}

impl ReportSection {
    pub fn new(title: &str) -> Self {
        Self { title: title.to_string(), timestamp: crate::logging::now_timestamp(), entries: Vec::new() }
    }

    pub fn value(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.entries.push(Entry::Value { key: key.to_string(), value: value.into() });
        self
    }

    /// One entry per top-level field of a stage's settings (its config section), in their order.
    pub fn settings(mut self, settings: &impl serde::Serialize) -> Self {
        if let Ok(Value::Object(map)) = serde_json::to_value(settings) {
            for (k, v) in map {
                self = self.value(&k, v);
            }
        }
        self
    }

    pub fn markdown(mut self, text: impl Into<String>) -> Self {
        self.entries.push(Entry::Markdown { text: text.into() });
        self
    }

    pub fn slug(&self) -> String {
        slug(&self.title)
    }

    /// The value stored under `key`, if any.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries.iter().find_map(|e| match e {
            Entry::Value { key: k, value } if k == key => Some(value),
            _ => None,
        })
    }

    /// Writes the section atomically into `report_dir`, replacing an earlier one of the same title.
    pub fn write(&self, report_dir: &Path) -> std::io::Result<PathBuf> {
        let path = report_dir.join(format!("{}.json", self.slug()));
        crate::fsutil::write_json_atomic(&path, self)?;
        Ok(path)
    }
}

pub fn slug(title: &str) -> String {
    let lowered: String =
        title.to_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    lowered.split('-').filter(|s| !s.is_empty()).collect::<Vec<_>>().join("-")
}

/// Reads every section file in `report_dir`, in canonical order. Unreadable files are reported, not fatal.
pub fn read_sections(report_dir: &Path) -> (Vec<ReportSection>, Vec<String>) {
    let mut found = Vec::new();
    let mut problems = Vec::new();
    let Ok(entries) = std::fs::read_dir(report_dir) else {
        return (found, problems);
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.retain(|p| p.extension().is_some_and(|e| e == "json") && !is_bookkeeping_file(p));
    for path in paths {
        match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<ReportSection>(&b).map_err(|e| e.to_string()))
        {
            Ok(section) => found.push(section),
            Err(e) => problems.push(format!("{}: {e}", path.display())),
        }
    }
    found.sort_by_key(|s| {
        let slug = s.slug();
        (SECTION_ORDER.iter().position(|o| *o == slug).unwrap_or(SECTION_ORDER.len()), slug)
    });
    (found, problems)
}

/// Formats a value as the reference report does: floats `.4f`, integers >= 10,000 with thousands
/// separators, strings raw.
pub fn format_value(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_f64() => format!("{:.4}", n.as_f64().unwrap_or(f64::NAN)),
        Value::Number(n) => match n.as_i64() {
            Some(i) if i.abs() >= 10_000 => with_thousands(i),
            _ => n.to_string(),
        },
        Value::Null => "-".to_string(),
        other => other.to_string(),
    }
}

fn with_thousands(i: i64) -> String {
    let digits = i.unsigned_abs().to_string();
    let mut out = String::new();
    for (n, c) in digits.chars().enumerate() {
        if n > 0 && (digits.len() - n).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if i < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// The run's start time and description, written by `report::reset` beside the sections.
pub const STARTED_FILE: &str = "started.json";
pub const RUN_FILE: &str = "run.json";

/// Whether `path` is one of the report directory's bookkeeping files rather than a section.
pub fn is_bookkeeping_file(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == STARTED_FILE || n == RUN_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn formats_like_the_reference() {
        assert_eq!(format_value(&json!(0.221934)), "0.2219");
        assert_eq!(format_value(&json!(560988160)), "560,988,160");
        assert_eq!(format_value(&json!(-12345)), "-12,345");
        assert_eq!(format_value(&json!(9999)), "9999");
        assert_eq!(format_value(&json!("d20")), "d20");
    }

    #[test]
    fn slugs_and_order() {
        assert_eq!(slug("Chat evaluation sft"), "chat-evaluation-sft");
        assert_eq!(slug("Base model training"), "base-model-training");
        let dir = tempfile::tempdir().unwrap();
        for title in ["Zeta extra", "Chat SFT", "Tokenizer training"] {
            ReportSection::new(title).value("x", 1).write(dir.path()).unwrap();
        }
        std::fs::write(dir.path().join("broken.json"), "{").unwrap();
        let (sections, problems) = read_sections(dir.path());
        let titles: Vec<_> = sections.iter().map(|s| s.title.as_str()).collect();
        assert_eq!(titles, ["Tokenizer training", "Chat SFT", "Zeta extra"]);
        assert_eq!(problems.len(), 1);
    }
}
