//! Checkpoints (NANOCHAT.md §8.1, DESIGN.md): `model_XXXXXX.safetensors` (the reference's state_dict
//! names), `optim_XXXXXX_rankR.safetensors` and `meta_XXXXXX.json`. Each file is written under a
//! temporary name and renamed; the meta file goes last, so a checkpoint exists only once complete.
//! A write that runs out of space says how much it needed ([`crate::fsutil::NoSpace`]); the
//! checkpoints already written stay as they were.
pub mod source;
pub mod torch_pt;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::model::{Gpt, GptConfig};

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot write checkpoint file {path}: {message}")]
    Write { path: PathBuf, message: String },
    #[error("cannot read checkpoint file {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("checkpoint {path} does not fit the model: {message}")]
    Mismatch { path: PathBuf, message: String },
}

/// Loop state needed to resume exactly (§8.1 `loop_state`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LoopState {
    /// +inf before the first evaluation (stored as null: JSON has no infinity).
    #[serde(with = "infinity_as_null")]
    pub min_val_bpb: f64,
    pub smooth_train_loss: f64,
    pub total_training_time: f64,
}

impl Default for LoopState {
    fn default() -> Self {
        LoopState { min_val_bpb: f64::INFINITY, smooth_train_loss: 0.0, total_training_time: 0.0 }
    }
}

mod infinity_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::INFINITY))
    }
}

/// `meta_XXXXXX.json`, with the reference's field names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub step: u64,
    pub val_bpb: Option<f64>,
    pub model_config: GptConfig,
    pub user_config: serde_json::Value,
    /// The device batch the stage trained with.
    pub device_batch_size: u32,
    pub max_seq_len: u32,
    /// The device batch known to fit in GPU memory (fitted by the stage or carried from its source,
    /// src/train/batch_fit.rs); a later stage starting from this checkpoint starts no higher.
    /// Absent where nothing was fitted (CPU) and in the reference's checkpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fitted_device_batch_size: Option<u32>,
    pub dataloader_state_dict: serde_json::Value,
    pub loop_state: LoopState,
    /// SFT: the validation loss (nats per target) and the categorical accuracies (§5.4 meta).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<serde_json::Value>,
}

impl CheckpointMeta {
    /// The meta every stage writes at `step`: the model's configuration, the stage's settings, its
    /// device batch and sequence length, where its data stopped and its loop state. The optional
    /// figures (validation, fitted batch, metrics) start empty; a stage sets the ones it has.
    pub fn at(
        step: i64,
        model: &Gpt,
        user_config: &impl serde::Serialize,
        device_batch_size: u32,
        max_seq_len: u32,
        dataloader_state_dict: serde_json::Value,
        loop_state: LoopState,
    ) -> Self {
        CheckpointMeta {
            step: step as u64,
            val_bpb: None,
            model_config: model.config,
            user_config: serde_json::to_value(user_config).unwrap_or_default(),
            device_batch_size,
            max_seq_len,
            fitted_device_batch_size: None,
            dataloader_state_dict,
            loop_state,
            val_loss: None,
            metrics: None,
        }
    }
}

pub fn model_path(dir: &Path, step: u64) -> PathBuf {
    dir.join(format!("model_{step:06}.safetensors"))
}
pub fn optim_path(dir: &Path, step: u64, rank: usize) -> PathBuf {
    dir.join(format!("optim_{step:06}_rank{rank}.safetensors"))
}
pub fn meta_path(dir: &Path, step: u64) -> PathBuf {
    dir.join(format!("meta_{step:06}.json"))
}

fn write_tensors_atomic(path: &Path, tensors: &[(String, Tensor)]) -> Result<(), CheckpointError> {
    let err = |message: String| CheckpointError::Write { path: path.to_path_buf(), message };
    let tmp = crate::fsutil::temporary_path(path);
    if let Some(dir) = tmp.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    }
    let contiguous: Vec<(String, Tensor)> =
        tensors.iter().map(|(n, t)| (n.clone(), t.contiguous().to_device(tch::Device::Cpu))).collect();
    let bytes: u64 = contiguous.iter().map(|(_, t)| (t.numel() * t.kind().elt_size_in_bytes()) as u64).sum();
    if let Err(e) = Tensor::write_safetensors(&contiguous, &tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(match e {
            tch::TchError::SafeTensorError { err: safetensors::SafeTensorError::IoError(io), .. } => {
                err(crate::fsutil::explain_write_error(io, path, bytes).to_string())
            }
            other => err(other.to_string()),
        });
    }
    crate::fsutil::commit_temporary(&tmp, path, bytes).map_err(|e| err(e.to_string()))
}

/// Deletes the temporary files (`.NAME.tmp.PID`) of this rank's checkpoint files (the model and
/// meta files on rank 0, its own optimizer shards) that a writer killed mid-write left in `dir`: a
/// file is stale once no process with its PID runs any more. Returns how many were removed.
pub fn remove_stale_temporaries(dir: &Path, rank: usize) -> std::io::Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        other => other?,
    };
    let own_suffix = format!("_rank{rank}.safetensors");
    let ours = |name: &str| {
        (name.starts_with("optim_") && name.ends_with(&own_suffix))
            || (rank == 0 && (name.starts_with("model_") || name.starts_with("meta_")))
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some((name, pid)) = file_name.to_str().and_then(|n| n.strip_prefix('.')?.rsplit_once(".tmp.")) else {
            continue;
        };
        let Ok(pid) = pid.parse::<libc::pid_t>() else { continue };
        if !ours(name) {
            continue;
        }
        // SAFETY: signal 0 only asks whether the process exists.
        let gone =
            unsafe { libc::kill(pid, 0) } != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            std::fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Saves the model (rank 0 only, as the reference), this rank's optimizer state, then the meta file.
pub fn save(
    dir: &Path,
    model: &Gpt,
    optimizer_state: &[(String, Tensor)],
    meta: &CheckpointMeta,
    rank: usize,
) -> Result<(), CheckpointError> {
    match remove_stale_temporaries(dir, rank) {
        Ok(0) => {}
        Ok(n) => log::info!("removed {n} temporary file(s) a killed run left in {}", dir.display()),
        Err(e) => log::warn!("cannot remove the temporary files a killed run left in {}: {e}", dir.display()),
    }
    if rank == 0 {
        write_tensors_atomic(&model_path(dir, meta.step), &model.named_parameters())?;
    }
    write_tensors_atomic(&optim_path(dir, meta.step, rank), optimizer_state)?;
    if rank == 0 {
        let path = meta_path(dir, meta.step);
        crate::fsutil::write_json_atomic(&path, meta)
            .map_err(|e| CheckpointError::Write { path, message: e.to_string() })?;
    }
    Ok(())
}

/// The largest step with a complete checkpoint in `dir`.
pub fn latest_step(dir: &Path) -> Option<u64> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("meta_")?.strip_suffix(".json")?.parse().ok())
        .max()
}

pub fn load_meta(dir: &Path, step: u64) -> Result<CheckpointMeta, CheckpointError> {
    let path = meta_path(dir, step);
    let bytes =
        std::fs::read(&path).map_err(|e| CheckpointError::Read { path: path.clone(), message: e.to_string() })?;
    serde_json::from_slice(&bytes).map_err(|e| CheckpointError::Read { path, message: e.to_string() })
}

/// Named tensors of a `.safetensors` file or of a PyTorch `.pt` state_dict (the reference's
/// `model_XXXXXX.pt`); a `_orig_mod.` prefix (torch.compile) is dropped.
pub fn read_tensors(path: &Path) -> Result<HashMap<String, Tensor>, CheckpointError> {
    let read_err = |message: String| CheckpointError::Read { path: path.to_path_buf(), message };
    let tensors: Vec<(String, Tensor)> = if path.extension().is_some_and(|e| e == "pt") {
        torch_pt::read(path).map_err(|e| read_err(e.to_string()))?
    } else {
        Tensor::read_safetensors(path).map_err(|e| read_err(e.to_string()))?
    };
    Ok(tensors.into_iter().map(|(name, t)| (name.strip_prefix("_orig_mod.").unwrap_or(&name).to_string(), t)).collect())
}

/// Writes named tensors as a PyTorch `.pt` state_dict that `torch.load` (and so the reference's
/// checkpoint loader) reads.
pub fn write_pt(path: &Path, tensors: &[(String, Tensor)]) -> Result<(), CheckpointError> {
    torch_pt::write(path, tensors)
        .map_err(|e| CheckpointError::Write { path: path.to_path_buf(), message: e.to_string() })
}

/// Writes named tensors as `.pt` or `.safetensors` by the file extension.
pub fn write_tensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<(), CheckpointError> {
    if path.extension().is_some_and(|e| e == "pt") {
        write_pt(path, tensors)
    } else {
        write_tensors_atomic(path, tensors)
    }
}

/// Copies named weights into the model: every parameter must be present with its shape (strict, as the
/// reference's `load_state_dict(strict=True)`); dtypes are converted to the model's.
pub fn load_weights(model: &Gpt, weights: &HashMap<String, Tensor>, source: &Path) -> Result<(), CheckpointError> {
    let mismatch = |message: String| CheckpointError::Mismatch { path: source.to_path_buf(), message };
    let params = model.named_parameters();
    if let Some(extra) = weights.keys().find(|k| !params.iter().any(|(n, _)| n == *k)) {
        return Err(mismatch(format!("unexpected tensor `{extra}`")));
    }
    tch::no_grad(|| {
        for (name, mut var) in params {
            let w = weights.get(&name).ok_or_else(|| mismatch(format!("missing tensor `{name}`")))?;
            if w.size() != var.size() {
                return Err(mismatch(format!("`{name}` has shape {:?}, the model expects {:?}", w.size(), var.size())));
            }
            var.copy_(&w.to_device(var.device()).to_kind(var.kind()));
        }
        Ok(())
    })
}

/// `--resume`: the last complete checkpoint of `dir` into `model` (same configuration required) and
/// this rank's optimizer state into `optimizers`; returns its meta (step, data positions, loop
/// state), or `None` when `dir` holds no complete checkpoint yet (an attempt that stopped before its
/// first save starts again at step 0).
pub fn restore_latest(
    dir: &Path,
    model: &Gpt,
    optimizers: &mut crate::optim::Optimizers,
    rank: usize,
) -> Result<Option<CheckpointMeta>, CheckpointError> {
    let Some(step) = latest_step(dir) else {
        log::info!("--resume: no complete checkpoint in {} yet; starting at step 0", dir.display());
        return Ok(None);
    };
    let meta = load_meta(dir, step)?;
    let path = model_path(dir, step);
    if meta.model_config != model.config {
        return Err(CheckpointError::Mismatch {
            path,
            message: format!(
                "the checkpoint's model {:?} differs from this run's {:?}",
                meta.model_config, model.config
            ),
        });
    }
    load_weights(model, &read_tensors(&path)?, &path)?;
    let optim = optim_path(dir, step, rank);
    optimizers
        .load_state_tensors(&read_tensors(&optim)?)
        .map_err(|e| CheckpointError::Mismatch { path: optim, message: e.to_string() })?;
    Ok(Some(meta))
}

/// A stage's `--resume` (when `resume` is set): [`restore_latest`], with a log line naming the
/// stage and the step it continues from. `None` without `--resume` or without a checkpoint yet.
pub fn resume(
    resume: bool,
    stage: &str,
    dir: &Path,
    model: &Gpt,
    optimizers: &mut crate::optim::Optimizers,
    rank: usize,
) -> Result<Option<CheckpointMeta>, CheckpointError> {
    let meta = if resume { restore_latest(dir, model, optimizers, rank)? } else { None };
    if let Some(meta) = &meta {
        log::info!("{stage}: resuming from step {} of {}", meta.step, dir.display());
    }
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporaries_of_writers_that_died_are_removed_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (dead, alive) = (libc::pid_t::MAX, std::process::id());
        let files = [
            format!(".model_000004.safetensors.tmp.{dead}"),
            format!(".optim_000004_rank0.safetensors.tmp.{dead}"),
            format!(".optim_000004_rank1.safetensors.tmp.{dead}"),
            format!(".meta_000004.json.tmp.{alive}"),
            format!(".metrics.jsonl.tmp.{dead}"),
            "model_000004.safetensors".to_string(),
        ];
        for f in &files {
            std::fs::write(dir.path().join(f), b"x").unwrap();
        }
        let left = || {
            let mut names: Vec<String> =
                std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
            names.sort();
            names
        };
        assert_eq!(remove_stale_temporaries(dir.path(), 0).unwrap(), 2);
        let mut expected = vec![files[2].clone(), files[3].clone(), files[4].clone(), files[5].clone()];
        expected.sort();
        assert_eq!(left(), expected, "rank 1's shard, a live writer's file and non-checkpoint files stay");
        assert_eq!(remove_stale_temporaries(dir.path(), 1).unwrap(), 1);
        assert!(!left().contains(&files[2]));
        assert_eq!(remove_stale_temporaries(&dir.path().join("absent"), 0).unwrap(), 0);
    }

    #[test]
    fn a_92d63d4_model_round_trips_with_its_options() {
        let dir = tempfile::tempdir().unwrap();
        let config = GptConfig::new(32, 300, 3, 2, 1, 64).with_92d63d4_options("SL".parse().unwrap());
        let mut model = Gpt::new(config, tch::Device::Cpu).unwrap();
        model.init_weights();
        let meta = CheckpointMeta::at(7, &model, &(), 2, 32, serde_json::Value::Null, LoopState::default());
        save(dir.path(), &model, &[], &meta, 0).unwrap();
        assert_eq!(load_meta(dir.path(), 7).unwrap().model_config, config);
        let source = source::SourceCheckpoint::in_dir(dir.path(), None).unwrap();
        let loaded = source.load_model(tch::Device::Cpu, crate::model::Precision::Float32).unwrap();
        assert_eq!(loaded.config, config);
        let (ours, theirs) = (model.named_parameters(), loaded.named_parameters());
        assert!(
            ours.iter().any(|(n, _)| n == "value_embeds.2.weight")
                && ours.iter().any(|(n, _)| n == "smear_gate.weight")
        );
        assert_eq!(ours.len(), theirs.len());
        for ((name, a), (_, b)) in ours.iter().zip(&theirs) {
            assert!(a.equal(b), "{name}");
        }
        // Without its options the same weights are refused by name, not misread.
        let late_2025 = Gpt::new(GptConfig::new(32, 300, 3, 2, 1, 64), tch::Device::Cpu).unwrap();
        let path = model_path(dir.path(), 7);
        let error = load_weights(&late_2025, &read_tensors(&path).unwrap(), &path).unwrap_err();
        assert!(error.to_string().contains("unexpected tensor"), "{error}");
    }
}
