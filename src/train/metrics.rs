//! The metrics log of a training stage: `metrics.jsonl` in its checkpoint directory, one JSON
//! object per line with the raw per-step loss next to the smoothed one and evaluation losses in
//! nats next to bits per byte. Written by rank 0. A resumed run drops the lines from its start step
//! on, so the log reads as one uninterrupted run.
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub const METRICS_FILE: &str = "metrics.jsonl";

/// Smoothing of the logged training loss (§4.4): EMA with this β, debiased.
pub const LOSS_EMA_BETA: f64 = 0.9;

#[derive(Debug, thiserror::Error)]
#[error("writing the metrics log {path}: {source}")]
pub struct MetricsError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

pub struct MetricsLog {
    path: PathBuf,
    file: Option<std::fs::File>,
}

impl MetricsLog {
    /// Opens `<dir>/metrics.jsonl` on rank 0 (other ranks write nothing), keeping only lines of
    /// steps before `start_step`.
    pub fn open(dir: &Path, start_step: i64, is_master: bool) -> Result<Self, MetricsError> {
        let path = dir.join(METRICS_FILE);
        if !is_master {
            return Ok(MetricsLog { path, file: None });
        }
        let err = |source| MetricsError { path: path.clone(), source };
        std::fs::create_dir_all(dir).map_err(err)?;
        let kept: String = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter(|line| {
                let step = serde_json::from_str::<serde_json::Value>(line).ok().and_then(|v| v["step"].as_i64());
                step.is_some_and(|s| s < start_step)
            })
            .map(|l| format!("{l}\n"))
            .collect();
        crate::fsutil::write_atomic(&path, kept.as_bytes()).map_err(err)?;
        let file = std::fs::OpenOptions::new().append(true).open(&path).map_err(err)?;
        Ok(MetricsLog { path, file: Some(file) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn write(&mut self, record: &impl Serialize) -> Result<(), MetricsError> {
        if let Some(f) = &mut self.file {
            let line = serde_json::to_string(record).unwrap_or_default();
            writeln!(f, "{line}").map_err(|source| MetricsError { path: self.path.clone(), source })?;
        }
        Ok(())
    }
}

/// Logs a validation bits-per-byte evaluation at `step`: the console line, the metrics line (bpb and
/// nats per token), the running minimum. Returns the bpb.
pub fn record_bpb_evaluation(
    metrics: &mut MetricsLog,
    step: i64,
    totals: &crate::eval::bpb::BpbTotals,
    state: &mut crate::checkpoint::LoopState,
) -> Result<f64, MetricsError> {
    let bpb = totals.bpb();
    crate::progress::suspend_bars(|| log::info!("Step {step:05} | Validation bpb: {bpb:.4}"));
    state.min_val_bpb = state.min_val_bpb.min(bpb);
    metrics.write(&StepRecord {
        step,
        val_bpb: Some(bpb),
        val_loss: Some(totals.nats_per_token()),
        total_training_time: state.total_training_time,
        ..StepRecord::default()
    })?;
    Ok(bpb)
}

/// The debiased EMA of the training loss (§4.4): `update` with each step's raw loss.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct SmoothedLoss {
    pub ema: f64,
}

impl SmoothedLoss {
    /// Adds step `step`'s loss; returns the debiased value.
    pub fn update(&mut self, step: i64, loss: f64) -> f64 {
        self.ema = LOSS_EMA_BETA * self.ema + (1.0 - LOSS_EMA_BETA) * loss;
        self.ema / (1.0 - LOSS_EMA_BETA.powi(step as i32 + 1))
    }
}

/// One line of a metrics log: a training step (loss…) or an evaluation (val_…); absent fields are
/// left out.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StepRecord {
    pub step: i64,
    /// The step's raw training loss (nats per trained target; RL: the policy-gradient loss).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    /// The debiased EMA of `loss` that the console shows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smoothed_loss: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lrm: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub muon_momentum: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grad_norm: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trained_tokens: Option<i64>,
    /// RL: the step's mean reward and mean sequence length (prompt + generated tokens).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reward: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequence_length: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dt_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tok_per_sec: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mfu: Option<f64>,
    /// Validation bits per byte and the same loss in nats per token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_bpb: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f64>,
    /// CORE during base training (§6.1); each task's centered accuracy goes in `metrics`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub core_metric: Option<f64>,
    /// Other evaluations (e.g. SFT's MMLU / ARC-Easy accuracy, RL's pass@k).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<serde_json::Value>,
    pub total_training_time: f64,
}
