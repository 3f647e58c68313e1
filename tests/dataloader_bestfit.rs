//! The BOS-aligned best-fit loader against the reference's own (nanochat 92d63d4,
//! tests/golden/bestfit/batches.json made by tests/golden/make_bestfit_golden.py): the first 50
//! batches of each rank, on the same in-memory corpus and byte-level tokenizer.
#[path = "support/memory_shards.rs"]
mod memory_shards;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use memory_shards::{Bytes, MemoryShards, BOS};
use nanochat::data::batch_source::BatchSource;
use nanochat::data::bestfit_loader::{BestFitLoader, BestFitState};
use nanochat::data::dataloader::LoaderConfig;
use tch::{Device, Tensor};

fn golden() -> serde_json::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/bestfit/batches.json");
    serde_json::from_slice(&std::fs::read(path).expect("golden file is committed")).unwrap()
}

/// The golden's corpus (its `document`), and the train split: every shard but the last.
fn corpus(golden: &serde_json::Value) -> (Vec<PathBuf>, Arc<MemoryShards>) {
    let per_group = golden["docs_per_group"].as_u64().unwrap() as usize;
    let mut map = HashMap::new();
    let mut paths = Vec::new();
    for shard in golden["shards"].as_array().unwrap() {
        let (s, groups) = (shard[0].as_u64().unwrap() as usize, shard[1].as_u64().unwrap() as usize);
        let path = PathBuf::from(format!("shard_{s:05}.parquet"));
        let rgs = (0..groups)
            .map(|g| {
                (0..per_group)
                    .map(|d| format!("s{s} g{g} d{d} {}", "x".repeat((d * 37 + g * 11 + s * 5) % 151)))
                    .collect()
            })
            .collect();
        map.insert(path.clone(), rgs);
        paths.push(path);
    }
    paths.pop();
    (paths, Arc::new(MemoryShards(map)))
}

fn loader(golden: &serde_json::Value, rank: usize, world: usize, resume: Option<BestFitState>) -> BestFitLoader {
    let (shards, source) = corpus(golden);
    let config = LoaderConfig {
        shards,
        batch_size: golden["batch_size"].as_u64().unwrap() as usize,
        seq_len: golden["seq_len"].as_u64().unwrap() as usize,
        rank,
        world_size: world,
        device: Device::Cpu,
    };
    BestFitLoader::new(config, source, Arc::new(Bytes), resume).unwrap()
}

fn values(t: &Tensor) -> Vec<i64> {
    Vec::<i64>::try_from(t.flatten(0, -1)).unwrap()
}

fn rows(t: &Tensor) -> Vec<Vec<i64>> {
    (0..t.size()[0]).map(|r| values(&t.get(r))).collect()
}

fn digest(x: &Tensor, y: &Tensor) -> String {
    let bytes: Vec<u8> = values(x).iter().chain(&values(y)).flat_map(|v| v.to_le_bytes()).collect();
    nanochat::speedrun::digest::sha256_bytes(&bytes)
}

#[test]
fn batches_equal_the_reference_loaders_for_each_rank() {
    let golden = golden();
    for run in golden["runs"].as_array().unwrap() {
        let (rank, world) = (run["rank"].as_u64().unwrap() as usize, run["world"].as_u64().unwrap() as usize);
        let mut l = loader(&golden, rank, world, None);
        for (i, expected) in run["sha256"].as_array().unwrap().iter().enumerate() {
            let (x, y) = l.next_batch().unwrap();
            if let Some(full) = run["first"].get(i) {
                let as_rows = |v: &serde_json::Value| -> Vec<Vec<i64>> { serde_json::from_value(v.clone()).unwrap() };
                assert_eq!(rows(&x), as_rows(&full["inputs"]), "rank {rank}/{world} batch {i} inputs");
                assert_eq!(rows(&y), as_rows(&full["targets"]), "rank {rank}/{world} batch {i} targets");
            }
            assert_eq!(digest(&x, &y), expected.as_str().unwrap(), "rank {rank}/{world} batch {i}");
            // Every row starts with BOS, and the targets are the inputs shifted by one.
            assert!(rows(&x).iter().all(|r| r[0] == i64::from(BOS)), "batch {i}: a row without BOS first");
            let t = x.size()[1];
            assert_eq!(values(&x.narrow(1, 1, t - 1)), values(&y.narrow(1, 0, t - 1)));
        }
    }
}

/// A reference state (`[pq_idx, rg_idx, epoch]`, epochs counted from 1) as ours (from 0).
fn state_of(v: &serde_json::Value) -> BestFitState {
    let n = |i: usize| v[i].as_u64().unwrap();
    BestFitState { pq_idx: n(0) as usize, rg_idx: n(1) as usize, epoch: n(2) - 1 }
}

#[test]
fn states_and_resumed_batches_equal_the_reference_loaders() {
    let golden = golden();
    for run in golden["runs"].as_array().unwrap() {
        let (rank, world) = (run["rank"].as_u64().unwrap() as usize, run["world"].as_u64().unwrap() as usize);
        let mut l = loader(&golden, rank, world, None);
        for (i, expected) in run["states"].as_array().unwrap().iter().enumerate() {
            let _batch = l.next_batch().unwrap();
            let state: BestFitState = serde_json::from_value(l.state()).unwrap();
            assert_eq!(state, state_of(expected), "rank {rank}/{world} after batch {i}");
        }
    }
    // Rank 1 of 2 resumed: the next row group of the stored shard, the next shard when there is none
    // (from [0, 3, 2]), the next epoch when that was the last shard (from [1, 1, 3]).
    for case in golden["resumed"].as_array().unwrap() {
        let from = state_of(&case["from"]);
        let mut l = loader(&golden, 1, 2, Some(from));
        for (i, expected) in case["sha256"].as_array().unwrap().iter().enumerate() {
            let (x, y) = l.next_batch().unwrap();
            assert_eq!(digest(&x, &y), expected.as_str().unwrap(), "resumed from {from:?}, batch {i}");
        }
    }
}
