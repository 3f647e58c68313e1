//! The run report (NANOCHAT.md §8.2): stages write JSON sections under `base_dir/report/`;
//! `generate` renders report.md from a Tera template embedded in the binary, with an environment
//! header, every section that exists, SVG plots of the training stages' metrics logs and the
//! BASE/MID/SFT/RL summary table; `reset` starts anew.
pub mod environment;
pub mod plots;
pub mod provenance;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::report_section::{format_value, read_sections, Entry, ReportSection, RUN_FILE, STARTED_FILE};
pub use environment::Environment;

const TEMPLATE: &str = include_str!("templates/report.md.tera");

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("report template error: {0}")]
    Template(String),
}

/// When the run started (written by `reset`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunStart {
    pub started: String,
}

/// How the run can be redone (written by `speedrun`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunDescription {
    pub preset: String,
    pub seed: u64,
    pub base_dir: String,
    pub config_sha256: String,
    pub command: String,
}

/// Deletes every section, plot and report.md, and records the start time of a new run.
pub fn reset(report_dir: &Path) -> Result<(), ReportError> {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ReportError + '_ {
        move |source| ReportError::Io { path: path.to_path_buf(), source }
    }
    std::fs::create_dir_all(report_dir).map_err(io(report_dir))?;
    for entry in std::fs::read_dir(report_dir).map_err(io(report_dir))?.flatten() {
        let path = entry.path();
        let is_section = path.extension().is_some_and(|e| e == "json");
        let is_plot = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| plots::chart_files().any(|f| f == n));
        if is_section || is_plot || path.file_name().is_some_and(|n| n == "report.md") {
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
    }
    let path = report_dir.join(STARTED_FILE);
    crate::fsutil::write_json_atomic(&path, &RunStart { started: crate::logging::now_timestamp() }).map_err(io(&path))
}

pub fn write_run_description(report_dir: &Path, run: &RunDescription) -> Result<(), ReportError> {
    let path = report_dir.join(RUN_FILE);
    crate::fsutil::write_json_atomic(&path, run).map_err(|source| ReportError::Io { path, source })
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Summary table rows and where their values come from (§8.2): CORE from the base evaluation,
/// the chat tasks and ChatCORE from the chat evaluations; RL reports GSM8K only.
const SUMMARY_ROWS: &[(&str, &str)] = &[
    ("CORE", "CORE metric"),
    ("ARC-Challenge", "ARC-Challenge"),
    ("ARC-Easy", "ARC-Easy"),
    ("GSM8K", "GSM8K"),
    ("HumanEval", "HumanEval"),
    ("MMLU", "MMLU"),
    ("ChatCORE", "ChatCORE metric"),
];
const SUMMARY_COLUMNS: &[(&str, &str)] = &[
    ("base", "base-model-evaluation"),
    ("mid", "chat-evaluation-mid"),
    ("sft", "chat-evaluation-sft"),
    ("rl", "chat-evaluation-rl"),
];

fn summary_rows(sections: &[ReportSection]) -> Vec<serde_json::Map<String, Value>> {
    SUMMARY_ROWS
        .iter()
        .map(|(metric, key)| {
            let mut row = serde_json::Map::new();
            row.insert("metric".into(), Value::from(*metric));
            for (column, slug) in SUMMARY_COLUMNS {
                let allowed = *column != "rl" || *metric == "GSM8K";
                let cell = sections
                    .iter()
                    .find(|s| s.slug() == *slug)
                    .and_then(|s| s.get(key))
                    .filter(|_| allowed)
                    .map(|v| match v.as_f64() {
                        Some(x) => format!("{x:.4}"),
                        None => format_value(v),
                    })
                    .unwrap_or_else(|| "-".into());
                row.insert((*column).into(), Value::from(cell));
            }
            row
        })
        .collect()
}

fn section_lines(section: &ReportSection) -> Vec<String> {
    section
        .entries
        .iter()
        .map(|e| match e {
            Entry::Value { key, value } => format!("- {key}: {}", format_value(value)),
            Entry::Markdown { text } => text.trim_end().to_string(),
        })
        .collect()
}

/// "XhYm" between the run start and the last section, RL included (the reference's §8.2 stops at the
/// last non-RL section).
fn wall_clock(started: Option<&str>, sections: &[ReportSection]) -> Option<(String, f64)> {
    let parse = |s: &str| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").ok();
    let start = parse(started?)?;
    let end = sections.iter().filter_map(|s| parse(&s.timestamp)).max()?;
    let seconds = (end - start).num_seconds().max(0);
    Some((format!("{}h{}m", seconds / 3600, (seconds % 3600) / 60), seconds as f64 / 3600.0))
}

/// Renders `report_dir/report.md` from the sections present, with the plots of the run's metrics
/// logs (drawn into `report_dir`; a plot that fails is named in the report), and returns its path.
pub fn generate(report_dir: &Path, env: &Environment, gpu_hour_cost_usd: f64) -> Result<PathBuf, ReportError> {
    let (sections, problems) = read_sections(report_dir);
    let started = read_json::<RunStart>(&report_dir.join(STARTED_FILE)).map(|s| s.started);
    let run = read_json::<RunDescription>(&report_dir.join(RUN_FILE));
    let rate = environment::hourly_rate(&env.gpus, gpu_hour_cost_usd);
    let clock = wall_clock(started.as_deref(), &sections);

    let mut ctx = tera::Context::new();
    ctx.insert("generated", &crate::logging::now_timestamp());
    ctx.insert("env", env);
    ctx.insert("memory_gib", &format!("{:.1}", env.system.memory_gib));
    let gpus = match &env.gpus.unavailable_reason {
        Some(reason) if env.gpus.gpus.is_empty() => format!("none ({reason})"),
        _ => env.gpus.summary(),
    };
    ctx.insert("gpus", &gpus);
    ctx.insert(
        "gpu_memory",
        &(!env.gpus.gpus.is_empty()).then(|| format!("{:.1} GiB in all", env.gpus.total_memory_gib())),
    );
    let driver = match (&env.gpus.driver_version, &env.gpus.cuda_driver_version) {
        (Some(d), Some(c)) => format!("{d} (CUDA {c})"),
        (Some(d), None) => d.clone(),
        _ => "none".to_string(),
    };
    ctx.insert("driver", &driver);
    ctx.insert("hourly_rate", &rate.map(|r| format!("${r:.2}/hour")).unwrap_or_else(|| "n/a (no GPU)".into()));
    ctx.insert("run", &run);
    ctx.insert("started", &started);
    let rendered_sections: Vec<Value> = sections
        .iter()
        .map(|s| serde_json::json!({"title": s.title, "timestamp": s.timestamp, "lines": section_lines(s)}))
        .collect();
    ctx.insert("sections", &rendered_sections);
    ctx.insert("summary", &summary_rows(&sections));
    ctx.insert("wall_clock", &clock.as_ref().map(|c| c.0.clone()));
    let cost = match (rate, clock.as_ref()) {
        (Some(r), Some(c)) => {
            Some(format!("${:.2} ({} GPU(s) at ${r:.2}/hour in all, {})", r * c.1, env.gpus.gpus.len(), c.0))
        }
        (None, Some(_)) => Some("n/a (no GPU: the hourly rate is per GPU)".to_string()),
        _ => None,
    };
    ctx.insert("estimated_cost", &cost);
    ctx.insert("problems", &(!problems.is_empty()).then(|| problems.join("; ")));
    ctx.insert("plots", &plots::render_run_plots(report_dir));
    ctx.insert("bloat", &crate::build_info::bloat());
    let base_dir = report_dir.parent().unwrap_or(report_dir);
    ctx.insert("provenance", &provenance::collect(&base_dir.join("speedrun"), base_dir));

    let text = tera::Tera::one_off(TEMPLATE, &ctx, false).map_err(|e| ReportError::Template(format!("{e:?}")))?;
    let path = report_dir.join("report.md");
    crate::fsutil::write_atomic(&path, text.as_bytes())
        .map_err(|source| ReportError::Io { path: path.clone(), source })?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hw::{GpuInventory, SystemInfo};

    fn env() -> Environment {
        Environment {
            version: "0.1.0".into(),
            commit: "abc".into(),
            rustc: "rustc 1.95.0".into(),
            libtorch: "2.11.0+cu130".into(),
            container_image: None,
            system: SystemInfo {
                hostname: "box".into(),
                os: "Debian".into(),
                kernel: "6.1".into(),
                cpu_model: "cpu".into(),
                logical_cpus: 2,
                physical_cpus: 2,
                memory_gib: 24.0,
            },
            gpus: GpuInventory { unavailable_reason: Some("no driver".into()), ..Default::default() },
        }
    }

    #[test]
    fn renders_with_no_sections_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = generate(dir.path(), &env(), -1.0).unwrap();
        let md = std::fs::read_to_string(path).unwrap();
        assert!(md.starts_with("# nanochat training report"));
        assert!(md.contains("- GPUs: none (no driver)"));
        assert!(md.contains("- Hourly rate: n/a (no GPU)"));
        assert!(md.contains("| CORE | - | - | - | - |"));
        assert!(md.contains("| ChatCORE | - | - | - | - |"));
        assert!(!md.contains("Total wall clock time"), "no start time recorded");
        assert!(!md.contains("Container image"), "not run in a container");
    }

    #[test]
    fn provenance_lists_the_inputs_no_stage_wrote_or_says_there_were_none() {
        use super::provenance::tests::record;
        let dir = tempfile::tempdir().unwrap();
        let (base, records) = (dir.path(), dir.path().join("speedrun"));
        let shard = base.join("data/shard_00000.parquet").display().to_string();
        record("data", "2026-01-01 00:00:01", 1.0, &[], &[(&shard, "aa")]).save(&records).unwrap();
        record("tok-train", "2026-01-01 00:00:02", 1.0, &[(&shard, "aa")], &[]).save(&records).unwrap();
        let md = std::fs::read_to_string(generate(&base.join("report"), &env(), -1.0).unwrap()).unwrap();
        assert!(md.contains("Inputs: every file a stage read was written by a stage of this run"), "{md}");
        assert!(md.contains("aa  data/shard_00000.parquet"), "the shard is an output:\n{md}");

        record("base-eval", "2026-01-01 00:00:03", 1.0, &[("/elsewhere/bundle.zip", "cc")], &[])
            .save(&records)
            .unwrap();
        let md = std::fs::read_to_string(generate(&base.join("report"), &env(), -1.0).unwrap()).unwrap();
        assert!(md.contains("Inputs that no stage of this run wrote (sha256, path relative to the base dir):\n```\ncc  /elsewhere/bundle.zip\n```"), "{md}");
        assert!(!md.contains("Inputs: every file"), "{md}");
    }

    #[test]
    fn names_the_container_image_it_ran_in() {
        let dir = tempfile::tempdir().unwrap();
        let mut in_container = env();
        in_container.container_image = Some("nanochat:latest@sha256:abc".into());
        let md = std::fs::read_to_string(generate(dir.path(), &in_container, -1.0).unwrap()).unwrap();
        assert!(md.contains("- libtorch: 2.11.0+cu130\n- Container image: nanochat:latest@sha256:abc\n"), "{md}");
    }

    #[test]
    fn fills_summary_cells_of_stages_that_ran_and_leaves_others_empty() {
        let dir = tempfile::tempdir().unwrap();
        reset(dir.path()).unwrap();
        ReportSection::new("Base model evaluation")
            .value("Model", "base_model (step 21400)")
            .value("CORE metric", 0.22191)
            .write(dir.path())
            .unwrap();
        ReportSection::new("Chat evaluation sft")
            .value("ARC-Easy", 0.3876)
            .value("GSM8K", 0.04548)
            .value("ChatCORE metric", 0.0884)
            .write(dir.path())
            .unwrap();
        ReportSection::new("Chat evaluation rl").value("GSM8K", 0.0758).value("MMLU", 0.5).write(dir.path()).unwrap();
        ReportSection::new("Tokenizer training")
            .value("vocab_size", 65536)
            .markdown("| a | b |\n|---|---|")
            .write(dir.path())
            .unwrap();
        let md = std::fs::read_to_string(generate(dir.path(), &env(), -1.0).unwrap()).unwrap();
        assert!(md.contains("| CORE | 0.2219 | - | - | - |"), "{md}");
        assert!(md.contains("| ARC-Easy | - | - | 0.3876 | - |"), "{md}");
        assert!(md.contains("| GSM8K | - | - | 0.0455 | 0.0758 |"), "{md}");
        assert!(md.contains("| MMLU | - | - | - | - |"), "RL reports GSM8K only: {md}");
        assert!(md.contains("| ChatCORE | - | - | 0.0884 | - |"));
        assert!(md.contains("- vocab_size: 65,536\n| a | b |"));
        assert!(md.find("## Tokenizer training").unwrap() < md.find("## Base model evaluation").unwrap());
        assert!(md.contains("Total wall clock time: 0h0m"));
    }

    /// A base training log of three steps and an RL log of two, with an unreadable line when
    /// `garbage`, in the base directory above `report_dir`.
    fn write_metrics_logs(report_dir: &Path, garbage: bool) {
        let base_dir = report_dir.parent().unwrap();
        let mut base: Vec<String> = (0..3)
            .map(|step| {
                let loss = 3.0 - 0.1 * f64::from(step);
                format!(r#"{{"step":{step},"loss":{loss},"lrm":1.0,"tok_per_sec":1000.0,"total_training_time":0.0}}"#)
            })
            .collect();
        if garbage {
            base.push("{not json".into());
        }
        let rl = [r#"{"step":0,"reward":0.25}"#, r#"{"step":1,"reward":0.5,"metrics":{"pass@1":0.5}}"#];
        for (dir, lines) in [("base_d2", base.join("\n")), ("rl_d2", rl.join("\n"))] {
            std::fs::create_dir_all(base_dir.join(dir)).unwrap();
            std::fs::write(base_dir.join(dir).join("metrics.jsonl"), lines).unwrap();
        }
    }

    fn plots_section(md: &str) -> &str {
        &md[md.find("## Plots").expect("a Plots section")..md.find("## Summary").unwrap()]
    }

    #[test]
    fn links_the_plots_of_the_runs_metrics_logs() {
        let dir = tempfile::tempdir().unwrap();
        let report_dir = dir.path().join("report");
        reset(&report_dir).unwrap();
        write_metrics_logs(&report_dir, false);
        let md = std::fs::read_to_string(generate(&report_dir, &env(), -1.0).unwrap()).unwrap();
        assert_eq!(
            plots_section(&md),
            "## Plots\n\n![Base training loss (base_d2)](base_loss.svg)\n\n\
             ![Base training learning-rate schedule (base_d2)](base_lr.svg)\n\n\
             ![Base training throughput (base_d2)](base_throughput.svg)\n\n\
             ![Chat RL reward and pass@k (rl_d2)](rl_reward.svg)\n\n"
        );
        for file in ["base_loss.svg", "base_lr.svg", "base_throughput.svg", "rl_reward.svg"] {
            let svg = std::fs::read_to_string(report_dir.join(file)).unwrap();
            assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{file}: {svg}");
        }
        assert!(!report_dir.join("mid_loss.svg").exists() && !report_dir.join("sft_loss.svg").exists());
        reset(&report_dir).unwrap();
        assert!(!report_dir.join("base_loss.svg").exists(), "reset removes the plots");
    }

    #[test]
    fn names_a_plot_that_failed_and_renders_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let report_dir = dir.path().join("report");
        write_metrics_logs(&report_dir, true);
        std::fs::create_dir_all(report_dir.join("base_lr.svg")).unwrap();
        let md = std::fs::read_to_string(generate(&report_dir, &env(), -1.0).unwrap()).unwrap();
        let plots = plots_section(&md);
        assert!(plots.contains("![Base training loss (base_d2)](base_loss.svg)\n"), "{plots}");
        assert!(!plots.contains("](base_lr.svg)"), "{plots}");
        assert!(plots.contains("\n- Plot base_lr.svg failed: cannot write "), "{plots}");
        assert!(plots.contains("base_d2/metrics.jsonl: 1 unreadable line(s) skipped\n"), "{plots}");
        assert!(md.contains("| CORE | - | - | - | - |"), "the rest of the report is there");
    }

    #[test]
    fn says_when_there_is_nothing_to_plot() {
        let dir = tempfile::tempdir().unwrap();
        let md = std::fs::read_to_string(generate(&dir.path().join("report"), &env(), -1.0).unwrap()).unwrap();
        assert_eq!(plots_section(&md), "## Plots\n\nNo training metrics logs found.\n\n");
    }

    #[test]
    fn reset_removes_sections_and_the_old_report() {
        let dir = tempfile::tempdir().unwrap();
        ReportSection::new("Chat SFT").value("x", 1).write(dir.path()).unwrap();
        generate(dir.path(), &env(), -1.0).unwrap();
        reset(dir.path()).unwrap();
        assert!(read_sections(dir.path()).0.is_empty());
        assert!(!dir.path().join("report.md").exists());
        assert!(dir.path().join(STARTED_FILE).exists());
    }
}
