//! The distributed dataloader: the reference's token order (row groups strided over ranks, BOS before
//! every document, B·T+1 tokens per batch, endless epochs), and exact resume from any batch.
#[path = "support/memory_shards.rs"]
mod memory_shards;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use memory_shards::{Bytes, MemoryShards};
use nanochat::data::batch_source::BatchSource;
use nanochat::data::dataloader::{DistributedLoader, DocumentEncoder, LoaderConfig, LoaderPosition};
use tch::Device;

/// 3 shards with 5, 3 and 4 row groups of 150 short documents of varying length.
fn corpus() -> (Vec<PathBuf>, Arc<MemoryShards>) {
    let mut map = HashMap::new();
    let mut paths = Vec::new();
    for (s, groups) in [5usize, 3, 4].iter().enumerate() {
        let path = PathBuf::from(format!("shard_{s:05}.parquet"));
        let rgs = (0..*groups)
            .map(|g| (0..150).map(|d| format!("s{s} g{g} d{d} {}", "x".repeat((d * 7 + g) % 13))).collect())
            .collect();
        map.insert(path.clone(), rgs);
        paths.push(path);
    }
    (paths, Arc::new(MemoryShards(map)))
}

/// The order written out plainly, as a spec: epochs, shards, row groups r, r+W, …, documents.
fn expected_stream(paths: &[PathBuf], shards: &MemoryShards, rank: usize, world: usize, n: usize) -> Vec<i64> {
    let mut out = Vec::new();
    while out.len() < n {
        for p in paths {
            let groups = &shards.0[p];
            let mut rg = rank;
            while rg < groups.len() {
                for doc in &groups[rg] {
                    out.extend(Bytes.encode_with_bos(std::slice::from_ref(doc)).unwrap()[0].iter().map(|&t| t as i64));
                }
                rg += world;
            }
        }
    }
    out
}

fn loader(
    paths: &[PathBuf],
    shards: &Arc<MemoryShards>,
    rank: usize,
    world: usize,
    resume: Option<LoaderPosition>,
) -> DistributedLoader {
    let config = LoaderConfig {
        shards: paths.to_vec(),
        batch_size: 3,
        seq_len: 64,
        rank,
        world_size: world,
        device: Device::Cpu,
    };
    DistributedLoader::new(config, shards.clone(), Arc::new(Bytes), resume).unwrap()
}

fn batch_tokens(l: &mut DistributedLoader) -> (Vec<i64>, Vec<i64>) {
    let (x, y) = l.next_batch().unwrap();
    assert_eq!(x.size(), [3, 64]);
    (Vec::try_from(x.flatten(0, -1)).unwrap(), Vec::try_from(y.flatten(0, -1)).unwrap())
}

#[test]
fn token_order_matches_the_reference_for_each_rank() {
    let (paths, shards) = corpus();
    let per_batch = 3 * 64 + 1;
    for (rank, world) in [(0, 1), (0, 2), (1, 2), (2, 4)] {
        let mut l = loader(&paths, &shards, rank, world, None);
        // Enough batches to wrap into a third epoch (one call with n = 1 yields exactly one epoch).
        let epoch_tokens = expected_stream(&paths, &shards, rank, world, 1).len();
        let batches = 2 * epoch_tokens / per_batch + 3;
        let stream = expected_stream(&paths, &shards, rank, world, (batches + 1) * per_batch);
        for i in 0..batches {
            let (x, y) = batch_tokens(&mut l);
            let want = &stream[i * per_batch..(i + 1) * per_batch];
            assert_eq!(x, want[..per_batch - 1], "rank {rank}/{world} batch {i} inputs");
            assert_eq!(y, want[1..], "rank {rank}/{world} batch {i} targets");
        }
    }
}

#[test]
fn resuming_from_any_batch_continues_with_the_same_tokens() {
    let (paths, shards) = corpus();
    let mut straight = loader(&paths, &shards, 1, 2, None);
    // Rank 1 of 2 sees ~13K tokens per epoch: 90 batches of 193 tokens cross an epoch boundary.
    let reference: Vec<_> = (0..90).map(|_| batch_tokens(&mut straight)).collect();
    let mut walker = loader(&paths, &shards, 1, 2, None);
    for k in 0..85 {
        let state: LoaderPosition = serde_json::from_value(walker.state()).unwrap();
        let mut resumed = loader(&paths, &shards, 1, 2, Some(state));
        for j in 0..3 {
            assert_eq!(batch_tokens(&mut resumed), reference[k + j], "resumed after {k} batches, batch {j}");
        }
        assert_eq!(batch_tokens(&mut walker), reference[k]);
    }
}

#[test]
fn clear_errors_for_no_data_and_a_rank_without_row_groups() {
    let (_, shards) = corpus();
    let config =
        LoaderConfig { shards: vec![], batch_size: 1, seq_len: 8, rank: 0, world_size: 1, device: Device::Cpu };
    let err = DistributedLoader::new(config, shards.clone(), Arc::new(Bytes), None).err().unwrap();
    assert!(err.to_string().contains("no data shards"), "{err}");
    // Shard 1 has 3 row groups: with 4 ranks, rank 3 never gets one.
    let only = vec![PathBuf::from("shard_00001.parquet")];
    let mut l = loader(&only, &shards, 3, 4, None);
    let err = l.next_batch().unwrap_err();
    assert!(err.to_string().contains("too few row groups"), "{err}");
}
