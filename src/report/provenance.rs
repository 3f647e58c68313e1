//! Where a run's numbers come from: the report's "Provenance" section, read from the speedrun's stage
//! records (`<base>/speedrun/<stage>.json`): each stage's start, wall time and exit status, and the
//! sha256 of every file it read (shards, eval bundle, tokenizer, datasets, the checkpoint it started
//! from) and wrote (tokenizer, checkpoints, evaluation results), with paths relative to the base dir.
use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::speedrun::record::RUNNING;
use crate::speedrun::StageRecord;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageRow {
    pub stage: String,
    pub started: String,
    pub wall_time: String,
    /// The exit status, or "running" for a stage still under way (the report's own row).
    pub exit: String,
    pub inputs: usize,
    pub outputs: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileDigest {
    pub path: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Provenance {
    /// The stages in the order they last started.
    pub stages: Vec<StageRow>,
    /// Files read by some stage and written by none (the run's inputs), by path.
    pub inputs: Vec<FileDigest>,
    /// Files written by a stage (the run's outputs), by path.
    pub outputs: Vec<FileDigest>,
    /// Sum of the stages' recorded wall times, "XhYmZs".
    pub stage_time: String,
}

/// Seconds as "XhYmZs" (hours and minutes left out while zero).
pub fn format_duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m{sec:02}s"),
        (h, m, sec) => format!("{h}h{m:02}m{sec:02}s"),
    }
}

/// The provenance of the run under `base_dir` from the records in `records_dir`; None when there
/// are no records (stages run one at a time, not through `speedrun`).
pub fn collect(records_dir: &Path, base_dir: &Path) -> Option<Provenance> {
    let mut records: Vec<StageRecord> = std::fs::read_dir(records_dir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let stage = name.strip_suffix(".json")?;
            StageRecord::load(records_dir, stage)
        })
        .collect();
    if records.is_empty() {
        return None;
    }
    records.sort_by(|a, b| a.started.cmp(&b.started).then_with(|| a.stage.cmp(&b.stage)));
    let relative = |path: &str| {
        Path::new(path).strip_prefix(base_dir).map(|p| p.display().to_string()).unwrap_or_else(|_| path.to_string())
    };
    let mut written: BTreeMap<String, String> = BTreeMap::new();
    let mut read: BTreeMap<String, String> = BTreeMap::new();
    for record in &records {
        written.extend(record.outputs.iter().map(|(p, d)| (relative(p), d.clone())));
        read.extend(record.inputs.iter().map(|(p, d)| (relative(p), d.clone())));
    }
    let digests = |map: BTreeMap<String, String>| -> Vec<FileDigest> {
        map.into_iter().map(|(path, sha256)| FileDigest { path, sha256 }).collect()
    };
    // An input path that did not exist when its stage ran (an optional file) is not a file of the run.
    let absent = |d: &String| d == crate::speedrun::digest::MISSING;
    let inputs = digests(read.into_iter().filter(|(p, d)| !written.contains_key(p) && !absent(d)).collect());
    let stages = records
        .iter()
        .map(|r| StageRow {
            stage: r.stage.clone(),
            started: r.started.clone(),
            wall_time: format_duration(r.wall_time_s),
            exit: if r.exit_code == RUNNING { "running".into() } else { r.exit_code.to_string() },
            inputs: r.inputs.len(),
            outputs: r.outputs.len(),
        })
        .collect();
    let stage_time = format_duration(records.iter().map(|r| r.wall_time_s).sum());
    Some(Provenance { stages, inputs, outputs: digests(written), stage_time })
}

#[cfg(test)]
pub(super) mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// A finished stage's record with these (path, sha256) inputs and outputs.
    pub(crate) fn record(
        stage: &str,
        started: &str,
        seconds: f64,
        inputs: &[(&str, &str)],
        outputs: &[(&str, &str)],
    ) -> StageRecord {
        let map = |files: &[(&str, &str)]| -> BTreeMap<String, String> {
            files.iter().map(|(p, d)| (p.to_string(), d.to_string())).collect()
        };
        StageRecord {
            stage: stage.into(),
            config: serde_json::json!({}),
            config_sha256: "c".into(),
            inputs: map(inputs),
            outputs: map(outputs),
            started: started.into(),
            wall_time_s: seconds,
            exit_code: 0,
            log: "log".into(),
            nanochat_version: "v".into(),
        }
    }

    #[test]
    fn inputs_are_files_no_stage_wrote_and_outputs_every_written_file() {
        let dir = tempfile::tempdir().unwrap();
        let records = dir.path().join("speedrun");
        let base = Path::new("/base");
        record(
            "tok-train",
            "2026-01-01 00:00:10",
            5.0,
            &[("/base/data/shard_00000.parquet", "aa"), ("/base/data/optional", "missing")],
            &[("/base/tok/tokenizer.pkl", "bb")],
        )
        .save(&records)
        .unwrap();
        record(
            "base-train",
            "2026-01-01 00:00:20",
            3725.4,
            &[("/base/tok/tokenizer.pkl", "bb"), ("/elsewhere/bundle.zip", "cc")],
            &[("/base/base_d2/model_000010.safetensors", "dd")],
        )
        .save(&records)
        .unwrap();
        let mut report = record("report", "2026-01-01 02:00:00", 0.0, &[], &[]);
        report.exit_code = RUNNING;
        report.save(&records).unwrap();
        let p = collect(&records, base).unwrap();
        let stages: Vec<&str> = p.stages.iter().map(|s| s.stage.as_str()).collect();
        assert_eq!(stages, ["tok-train", "base-train", "report"], "ordered by start");
        assert_eq!(p.stages[2].exit, "running");
        assert_eq!(p.stages[1].wall_time, "1h02m05s");
        assert_eq!((p.stages[1].inputs, p.stages[1].outputs), (2, 1));
        assert_eq!(p.stages[1].exit, "0");
        let paths = |files: &[FileDigest]| files.iter().map(|f| format!("{} {}", f.sha256, f.path)).collect::<Vec<_>>();
        assert_eq!(paths(&p.inputs), ["cc /elsewhere/bundle.zip", "aa data/shard_00000.parquet"]);
        assert_eq!(paths(&p.outputs), ["dd base_d2/model_000010.safetensors", "bb tok/tokenizer.pkl"]);
        assert_eq!(p.stage_time, "1h02m10s");
        assert_eq!(collect(&dir.path().join("none"), base), None);
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_duration(0.4), "0s");
        assert_eq!(format_duration(59.6), "1m00s");
        assert_eq!(format_duration(61.0), "1m01s");
        assert_eq!(format_duration(7322.0), "2h02m02s");
    }
}
