//! nanochat 92d63d4's SFT loader against the reference's own (tests/golden/sft_bestfit/batches.json,
//! made by tests/golden/make_sft_bestfit_golden.py running chat_sft.py's
//! `sft_data_generator_bos_bestfit`): 92d63d4's training and validation mixtures over the stand-in
//! datasets, rendered with the golden tokenizer, packed for ranks of worlds of 1 and 2; and a small
//! mixture shorter than the buffer (epochs, the end of the dataset, num_iterations, padding-only rows).
#[path = "support/chat_fixtures.rs"]
mod chat_fixtures;

use std::sync::Arc;

use chat_fixtures::{chat_base, golden_encoder, root};
use nanochat::chat::batches::StreamSlot;
use nanochat::chat::sft_bestfit::{SftBatch, SftBestFit, SftPackConfig, SftPackState};
use nanochat::chat::tasks::catalog::{self, shared};
use nanochat::chat::tasks::gsm8k::Gsm8k;
use nanochat::chat::tasks::mmlu::Mmlu;
use nanochat::chat::tasks::{SharedTask, Slice, TaskMixture};
use serde_json::Value;
use tch::{Device, Tensor};

fn golden() -> Value {
    let path = root().join("tests/golden/sft_bestfit/batches.json");
    serde_json::from_slice(&std::fs::read(path).expect("golden file is committed")).unwrap()
}

fn values(t: &Tensor) -> Vec<i64> {
    Vec::<i64>::try_from(t.flatten(0, -1)).unwrap()
}

fn rows(t: &Tensor) -> Vec<Vec<i64>> {
    (0..t.size()[0]).map(|r| values(&t.get(r))).collect()
}

fn digest(b: &SftBatch) -> String {
    let bytes: Vec<u8> = values(&b.inputs).iter().chain(&values(&b.targets)).flat_map(|v| v.to_le_bytes()).collect();
    nanochat::speedrun::digest::sha256_bytes(&bytes)
}

fn u(v: &Value) -> usize {
    v.as_u64().unwrap() as usize
}

/// The golden's three datasets, as our catalog and tasks build them.
fn mixtures(paths: &nanochat::paths::Paths) -> [(&'static str, TaskMixture); 3] {
    let all = Slice::default();
    let small = TaskMixture::new(vec![
        shared(Gsm8k::load(paths, "main", "test").unwrap(), Slice::stop(30)).unwrap(),
        shared(Mmlu::load(paths, "all", "dev").unwrap(), all).unwrap(),
    ]);
    [
        ("train", catalog::sft_train_mixture_92d63d4(paths, 3, 4).unwrap()),
        ("val", catalog::sft_val_mixture_92d63d4(paths).unwrap()),
        ("small", small),
    ]
}

#[test]
fn mixtures_are_the_references() {
    let golden = golden();
    let data = chat_base();
    for (name, mixture) in mixtures(&data.paths) {
        let expected = &golden["mixtures"][name];
        assert_eq!(mixture.index_map().len(), u(&expected["len"]), "{name}");
        let head: Vec<(u32, u32)> = serde_json::from_value(expected["index_map_head"].clone()).unwrap();
        assert_eq!(mixture.index_map()[..head.len()], head[..], "{name}");
    }
}

#[test]
fn batches_and_counters_equal_the_reference_loaders() {
    let golden = golden();
    let data = chat_base();
    let encoder = Arc::new(golden_encoder());
    assert_eq!(encoder.special_id("<|bos|>").unwrap(), golden["bos"].as_u64().unwrap() as u32);
    let tasks: Vec<(&str, SharedTask)> =
        mixtures(&data.paths).into_iter().map(|(name, m)| (name, shared(m, Slice::default()).unwrap())).collect();
    let runs = golden["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 7);
    for run in runs {
        let dataset = run["dataset"].as_str().unwrap();
        let task = tasks.iter().find(|(name, _)| *name == dataset).unwrap().1.clone();
        let (rank, world) = (u(&run["rank"]), u(&run["world"]));
        let num_iterations = run["num_iterations"].as_i64().unwrap();
        let config = SftPackConfig {
            batch_size: u(&run["batch_size"]),
            seq_len: u(&run["seq_len"]),
            buffer_size: u(&run["buffer_size"]),
            num_iterations: u64::try_from(num_iterations).ok(),
            slot: StreamSlot { stream: rank, streams: world },
            device: Device::Cpu,
        };
        let what = format!("{dataset} {} rank {rank}/{world}, {config:?}", run["split"].as_str().unwrap());
        let mut loader = SftBestFit::from_task(task.clone(), encoder.clone(), config).unwrap();
        for (i, expected) in run["batches"].as_array().unwrap().iter().enumerate() {
            let b = loader.next_batch().unwrap();
            if let Some(inputs) = expected.get("inputs") {
                let as_rows = |v: &Value| -> Vec<Vec<i64>> { serde_json::from_value(v.clone()).unwrap() };
                assert_eq!(rows(&b.inputs), as_rows(inputs), "{what}: batch {i} inputs");
                assert_eq!(rows(&b.targets), as_rows(&expected["targets"]), "{what}: batch {i} targets");
            }
            assert_eq!(digest(&b), expected["sha256"].as_str().unwrap(), "{what}: batch {i}");
            let state = SftPackState {
                cursor: u(&expected["cursor"]),
                consumed: u(&expected["consumed"]),
                epoch: expected["epoch"].as_u64().unwrap(),
                it: expected["it"].as_u64().unwrap(),
            };
            assert_eq!(b.state, state, "{what}: batch {i}");
            // The globals chat_sft.py's training loop reads; the "val" generator leaves them alone.
            if run["split"] == "train" {
                let progress: f64 = expected["approx_progress"].as_str().unwrap().parse().unwrap();
                assert_eq!(b.progress, progress, "{what}: batch {i}");
                assert_eq!(b.last_step, expected["last_step"].as_bool().unwrap(), "{what}: batch {i}");
                assert_eq!(b.state.epoch, expected["current_epoch"].as_u64().unwrap(), "{what}: batch {i}");
            }
        }
    }
}
