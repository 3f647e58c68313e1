//! The record a finished stage leaves behind: its resolved config, the sha256 of its inputs and
//! outputs, wall time and exit status. A stage whose record still verifies is skipped on re-runs.
//! A record is also saved as a stage starts, with [`RUNNING`] as its exit code: one still there
//! later tells of an attempt that was killed together with the speedrun.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The exit code of a record saved as its stage starts (a finished stage's code is never negative).
pub const RUNNING: i32 = -1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    pub stage: String,
    pub config: serde_json::Value,
    pub config_sha256: String,
    pub inputs: BTreeMap<String, String>,
    pub outputs: BTreeMap<String, String>,
    pub started: String,
    pub wall_time_s: f64,
    pub exit_code: i32,
    pub log: PathBuf,
    pub nanochat_version: String,
}

impl StageRecord {
    pub fn path(records_dir: &Path, stage: &str) -> PathBuf {
        records_dir.join(format!("{stage}.json"))
    }

    pub fn load(records_dir: &Path, stage: &str) -> Option<Self> {
        serde_json::from_slice(&std::fs::read(Self::path(records_dir, stage)).ok()?).ok()
    }

    pub fn save(&self, records_dir: &Path) -> std::io::Result<()> {
        crate::fsutil::write_json_atomic(&Self::path(records_dir, &self.stage), self)
    }
}
