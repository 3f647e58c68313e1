//! Device-batch fitting agreed between processes (src/train/batch_fit.rs): two CPU processes over
//! Gloo on 127.0.0.1, each given a different memory limit through the simulated-limit test hook,
//! both train with the smaller fit; and when one of them cannot fit a single row, both stop with an
//! error instead of one waiting for the other. The test re-runs its own binary as the two ranks.
#[path = "support/rank_workers.rs"]
mod rank_workers;

use std::time::Duration;

use nanochat::dist::{Cluster, DistContext};
use nanochat::model::{Gpt, GptConfig};
use nanochat::train::batch_fit::{
    fit_stage_batch, BatchFitError, BatchSettings, StageBatch, SIMULATED_MAX_DEVICE_BATCH,
};
use tch::Device;

const ROLE: &str = "NANOCHAT_TEST_BATCH_FIT_RANK";

/// In a worker: its rank and what fitting a 16-row device batch of a depth-1 model gave it. In the
/// parent test: None, after running `test_name` on two ranks with the simulated limits `limits`.
fn fit_on_two_ranks(test_name: &str, limits: [&'static str; 2]) -> Option<(usize, Result<StageBatch, BatchFitError>)> {
    let Some((rank, world, pg)) = rank_workers::worker(ROLE, Duration::from_secs(120)) else {
        rank_workers::spawn_workers_with_env(ROLE, test_name, 2, |rank| {
            vec![(SIMULATED_MAX_DEVICE_BATCH, limits[rank].to_string())]
        });
        return None;
    };
    let ctx =
        DistContext { rank, local_rank: rank, world_size: world, local_world_size: world, ..DistContext::single() };
    let cluster = Cluster { ctx: &ctx, group: Some(&pg), device: Device::Cpu };
    let model = Gpt::new(GptConfig::from_depth(1, 64, 16), Device::Cpu).unwrap();
    let settings = BatchSettings {
        section: "mid_train",
        device_batch_size: 16,
        row_tokens: 16,
        row_setting: Some("mid_train.max_seq_len"),
        carried: None,
    };
    Some((rank, fit_stage_batch(&model, &cluster, &settings)))
}

#[test]
fn two_processes_with_different_limits_agree_on_the_smaller_batch() {
    let test = "two_processes_with_different_limits_agree_on_the_smaller_batch";
    // Alone, rank 0 would train with 8 rows and rank 1 with 2.
    let Some((rank, fit)) = fit_on_two_ranks(test, ["8", "2"]) else { return };
    assert_eq!(fit.unwrap(), StageBatch { rows: 2, known_to_fit: true }, "rank {rank}");
}

#[test]
fn a_process_that_fits_nothing_stops_both() {
    let test = "a_process_that_fits_nothing_stops_both";
    let Some((rank, fit)) = fit_on_two_ranks(test, ["8", "0"]) else { return };
    let err = fit.unwrap_err();
    match rank {
        0 => assert!(matches!(err, BatchFitError::OtherProcess), "rank 0: {err}"),
        _ => assert!(err.to_string().contains("--set mid_train.max_seq_len=8"), "rank 1: {err}"),
    }
}
