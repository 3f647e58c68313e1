//! DistAdamW and DistMuon over Gloo with 2 and 4 processes on 127.0.0.1 (NANOCHAT.md §4.2, §4.3).
//! Every rank starts from the same parameters and gets its own gradients g_r; after each step every
//! rank must hold the parameters that single-process AdamW / Muon reach with the mean gradient.
//! The test re-runs its own binary as the worker ranks (selected by an environment variable).
#[path = "support/rank_workers.rs"]
mod rank_workers;

use std::collections::HashMap;
use std::time::Duration;

use nanochat::dist::{ProcessGroup, ReduceOp};
use nanochat::optim::{AdamEps, AdamGroup, AdamHyper, AdamW, DistAdamW, DistMuon, DistOptimError, Muon, MuonUpdate};
use tch::{Device, Kind, Tensor};

const ROLE: &str = "NANOCHAT_TEST_DIST_OPTIM_RANK";

fn spawn_workers(test_name: &str, world: usize) {
    rank_workers::spawn_workers(ROLE, test_name, world)
}

fn worker() -> Option<(usize, usize, ProcessGroup)> {
    rank_workers::worker(ROLE, Duration::from_secs(120))
}

/// Deterministic "gradient" of `rank` at `step` for parameter `index` (the same on every process).
fn gradient(shape: &[i64], kind: Kind, index: usize, rank: usize, step: usize) -> Tensor {
    tch::manual_seed((1_000_003 * step + 1_009 * index + rank) as i64);
    Tensor::randn(shape, (Kind::Double, Device::Cpu)).to_kind(kind)
}

/// The mean over ranks of [`gradient`], summed in rank order and divided by W.
fn mean_gradient(shape: &[i64], kind: Kind, index: usize, world: usize, step: usize) -> Tensor {
    let mut sum = gradient(shape, kind, index, 0, step);
    for r in 1..world {
        sum += gradient(shape, kind, index, r, step);
    }
    sum / world as f64
}

/// Makes `p.grad()` equal to `g` (through autograd, as a backward pass would).
fn set_grad(p: &Tensor, g: &Tensor) {
    let mut p = p.shallow_clone();
    p.zero_grad();
    (&p * g).sum(p.kind()).backward();
}

/// Fresh leaf copies of `params` that require grad.
fn leaves(params: &[Tensor]) -> Vec<Tensor> {
    params.iter().map(|p| p.detach().copy().set_requires_grad(true)).collect()
}

/// Asserts the parameters are bit-identical on every rank.
fn assert_same_on_every_rank(pg: &ProcessGroup, params: &[Tensor], what: &str) {
    for (i, p) in params.iter().enumerate() {
        let mut hi = p.detach().copy();
        let mut lo = p.detach().copy();
        pg.all_reduce(&mut hi, ReduceOp::Max).unwrap();
        pg.all_reduce(&mut lo, ReduceOp::Min).unwrap();
        assert!(hi.equal(&lo), "{what}: parameter {i} differs between ranks");
    }
}

/// max |a − b| / max |b|.
fn relative_diff(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (a.to_kind(Kind::Double), b.to_kind(Kind::Double));
    (&a - &b).abs().max().double_value(&[]) / b.abs().max().double_value(&[]).max(1e-30)
}

// ---------------------------------------------------------------------------------------------
// DistAdamW

/// (shape, kind, group) of the AdamW test parameters; group 0 and 1 have different LRs.
const ADAM_PARAMS: [(&[i64], Kind, usize); 4] =
    [(&[8, 6], Kind::Float, 0), (&[4, 3, 2], Kind::Float, 0), (&[12], Kind::Float, 1), (&[8, 4], Kind::BFloat16, 1)];

fn adam_initial() -> Vec<Tensor> {
    tch::manual_seed(7);
    ADAM_PARAMS
        .iter()
        .map(|(shape, kind, _)| Tensor::randn(*shape, (Kind::Double, Device::Cpu)).to_kind(*kind))
        .collect()
}

fn adam_groups(params: &[Tensor]) -> Vec<AdamGroup> {
    [("a", 0.01), ("b", 0.05)]
        .iter()
        .enumerate()
        .map(|(gi, (name, lr))| AdamGroup {
            name: name.to_string(),
            params: params
                .iter()
                .zip(ADAM_PARAMS)
                .filter(|(_, (_, _, g))| *g == gi)
                .map(|(p, _)| p.shallow_clone())
                .collect(),
            initial_lr: *lr,
            lr: *lr,
        })
        .collect()
}

const ADAM_BETAS: (f64, f64) = (0.8, 0.95);
const ADAM_EPS: f64 = 1e-10;
const ADAM_WD: f64 = 0.1;

fn dist_adamw_matches_adamw_body(rank: usize, world: usize, pg: &ProcessGroup) {
    let initial = adam_initial();
    let (dist_params, ref_params) = (leaves(&initial), leaves(&initial));
    let mut dist = DistAdamW::new(adam_groups(&dist_params), ADAM_BETAS, ADAM_EPS, ADAM_WD, rank, world).unwrap();
    let mut single = AdamW::new(adam_groups(&ref_params), ADAM_BETAS, ADAM_EPS, ADAM_WD);
    let (mut worst_f32, mut worst_bf16) = (0.0f64, 0.0f64);
    for step in 0..5 {
        // A schedule-like LR change midway, applied to both.
        let lrm = if step < 3 { 1.0 } else { 0.5 };
        dist.set_lr_multiplier(lrm);
        single.set_lr_multiplier(lrm);
        for (i, ((p, q), (shape, kind, _))) in dist_params.iter().zip(&ref_params).zip(ADAM_PARAMS).enumerate() {
            set_grad(p, &gradient(shape, kind, i, rank, step));
            set_grad(q, &mean_gradient(shape, kind, i, world, step));
        }
        dist.step(pg).unwrap();
        single.step();
        assert_same_on_every_rank(pg, &dist_params, "DistAdamW");
        for (i, (p, q)) in dist_params.iter().zip(&ref_params).enumerate() {
            let diff = relative_diff(p, q);
            if ADAM_PARAMS[i].1 == Kind::BFloat16 {
                worst_bf16 = worst_bf16.max(diff);
                assert!(diff < 2e-2, "W={world} step {step} bf16 parameter {i}: relative difference {diff:e}");
            } else {
                worst_f32 = worst_f32.max(diff);
                assert!(diff < 2e-6, "W={world} step {step} parameter {i}: relative difference {diff:e}");
            }
        }
    }
    if rank == 0 {
        eprintln!(
            "DistAdamW vs AdamW(mean grad), W={world}, 5 steps: max relative difference fp32 {worst_f32:e}, bf16 {worst_bf16:e}"
        );
    }
}

#[test]
fn dist_adamw_matches_adamw_on_the_mean_gradient_two_ranks() {
    match worker() {
        Some((rank, world, pg)) => dist_adamw_matches_adamw_body(rank, world, &pg),
        None => spawn_workers("dist_adamw_matches_adamw_on_the_mean_gradient_two_ranks", 2),
    }
}

#[test]
fn dist_adamw_matches_adamw_on_the_mean_gradient_four_ranks() {
    match worker() {
        Some((rank, world, pg)) => dist_adamw_matches_adamw_body(rank, world, &pg),
        None => spawn_workers("dist_adamw_matches_adamw_on_the_mean_gradient_four_ranks", 4),
    }
}

/// Both eps placements against their formulas (§4.3), in f64, with an eps large enough to matter.
fn eps_quirk_body(rank: usize, world: usize, pg: &ProcessGroup) {
    let (lr, (b1, b2), eps, wd) = (0.1, (0.8, 0.95), 1e-3, 0.0);
    let shape: &[i64] = &[4, 5];
    tch::manual_seed(3);
    let initial = Tensor::randn(shape, (Kind::Double, Device::Cpu));
    let run = |mode: AdamEps| -> Tensor {
        let p = leaves(&[initial.shallow_clone()]).remove(0);
        let group = AdamGroup { name: "p".into(), params: vec![p.shallow_clone()], initial_lr: lr, lr };
        let mut opt = DistAdamW::new(vec![group], (b1, b2), eps, wd, rank, world).unwrap().with_eps_mode(mode);
        for step in 0..3 {
            set_grad(&p, &(gradient(shape, Kind::Double, 0, rank, step) * 1e-3));
            opt.step(pg).unwrap();
        }
        p.detach()
    };
    let formula = |mode: AdamEps| -> Tensor {
        let (mut p, mut m, mut v) = (initial.copy(), initial.zeros_like(), initial.zeros_like());
        for step in 0..3 {
            let g = mean_gradient(shape, Kind::Double, 0, world, step) * 1e-3;
            m = &m * b1 + &g * (1.0 - b1);
            v = &v * b2 + &g * &g * (1.0 - b2);
            let t = (step + 1) as f64;
            let (c1, c2) = (1.0 - b1.powf(t), 1.0 - b2.powf(t));
            p -= match mode {
                AdamEps::BiasCorrected => (&m / c1) / ((&v / c2).sqrt() + eps) * lr,
                AdamEps::Uncorrected => &m / (v.sqrt() + eps) * (lr * c2.sqrt() / c1),
            };
        }
        p
    };
    let (standard, quirk) = (run(AdamEps::BiasCorrected), run(AdamEps::Uncorrected));
    let update = |p: &Tensor| p - &initial;
    let d_standard = relative_diff(&update(&standard), &update(&formula(AdamEps::BiasCorrected)));
    let d_quirk = relative_diff(&update(&quirk), &update(&formula(AdamEps::Uncorrected)));
    let between = relative_diff(&update(&quirk), &update(&standard));
    if rank == 0 {
        eprintln!(
            "DistAdamW eps placement, W={world}: standard vs formula {d_standard:e}, quirk vs formula {d_quirk:e}, \
             quirk vs standard {between:e}"
        );
    }
    assert!(d_standard < 1e-12 && d_quirk < 1e-12, "{d_standard:e} {d_quirk:e}");
    assert!(between > 1e-3, "eps must make a visible difference here: {between:e}");
}

#[test]
fn dist_adamw_eps_quirk_follows_its_formula() {
    match worker() {
        Some((rank, world, pg)) => eps_quirk_body(rank, world, &pg),
        None => spawn_workers("dist_adamw_eps_quirk_follows_its_formula", 2),
    }
}

fn temp_state_path(what: &str, rank: usize) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("nanochat-test-{what}-{}-rank{rank}.safetensors", std::process::id()))
}

/// Writes the state to a safetensors file and reads it back (as a checkpoint does).
fn through_file(state: Vec<(String, Tensor)>, path: &std::path::Path) -> HashMap<String, Tensor> {
    Tensor::write_safetensors(&state, path).unwrap();
    let loaded = Tensor::read_safetensors(path).unwrap().into_iter().collect();
    std::fs::remove_file(path).unwrap();
    loaded
}

fn adamw_resume_body(rank: usize, world: usize, pg: &ProcessGroup) {
    let grads = |params: &[Tensor], step: usize| {
        for (i, (p, (shape, kind, _))) in params.iter().zip(ADAM_PARAMS).enumerate() {
            set_grad(p, &gradient(shape, kind, i, rank, step));
        }
    };
    let params = leaves(&adam_initial());
    let mut opt = DistAdamW::new(adam_groups(&params), ADAM_BETAS, ADAM_EPS, ADAM_WD, rank, world)
        .unwrap()
        .with_eps_mode(AdamEps::Uncorrected);
    for step in 0..2 {
        grads(&params, step);
        opt.step(pg).unwrap();
    }
    let state = through_file(opt.state_tensors(), &temp_state_path("adamw", rank));
    let snapshot = leaves(&params);
    for step in 2..4 {
        grads(&params, step);
        opt.step(pg).unwrap();
    }
    let mut resumed = DistAdamW::new(adam_groups(&snapshot), ADAM_BETAS, ADAM_EPS, ADAM_WD, rank, world)
        .unwrap()
        .with_eps_mode(AdamEps::Uncorrected);
    resumed.load_state_tensors(&state).unwrap();
    assert_eq!(resumed.step, 2);
    for step in 2..4 {
        grads(&snapshot, step);
        resumed.step(pg).unwrap();
    }
    for (i, (a, b)) in params.iter().zip(&snapshot).enumerate() {
        assert!(a.equal(b), "parameter {i} differs after resuming");
    }
    // The state holds this rank's rows only, and refuses another world size.
    let rows = state["adamw.a.0.exp_avg"].size()[0];
    assert_eq!(rows, 8 / world as i64);
    let mut other = DistAdamW::new(adam_groups(&snapshot), ADAM_BETAS, ADAM_EPS, ADAM_WD, 0, 1).unwrap();
    let err = other.load_state_tensors(&state).unwrap_err().to_string();
    assert!(err.contains("same number of processes"), "{err}");
}

#[test]
fn dist_adamw_state_round_trip_continues_identically() {
    match worker() {
        Some((rank, world, pg)) => adamw_resume_body(rank, world, &pg),
        None => spawn_workers("dist_adamw_state_round_trip_continues_identically", 2),
    }
}

#[test]
fn dist_adamw_rejects_rows_not_divisible_by_the_world_size() {
    if std::env::var(ROLE).is_ok() {
        return;
    }
    let p = Tensor::zeros([6, 3], (Kind::Float, Device::Cpu));
    let group = AdamGroup { name: "lm_head".into(), params: vec![p], initial_lr: 0.1, lr: 0.1 };
    let err = DistAdamW::new(vec![group], ADAM_BETAS, ADAM_EPS, 0.0, 1, 4).err().expect("6 rows over 4 ranks");
    assert!(matches!(err, DistOptimError::IndivisibleRows { rows: 6, world_size: 4, .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("lm_head") && msg.contains("6 rows") && msg.contains("4 ranks"), "{msg}");
    // The same through from_adamw, and fine when the rows do divide.
    let adamw = AdamW::new(adam_groups(&adam_initial()), ADAM_BETAS, ADAM_EPS, 0.0);
    assert!(DistAdamW::from_adamw(adamw, 0, 4).is_ok());
    let p = Tensor::zeros([5], (Kind::Float, Device::Cpu));
    let group = AdamGroup { name: "odd".into(), params: vec![p], initial_lr: 0.1, lr: 0.1 };
    let adamw = AdamW::new(vec![group], ADAM_BETAS, ADAM_EPS, 0.0);
    assert!(DistAdamW::from_adamw(adamw, 0, 2).err().expect("5 rows over 2").to_string().contains("odd"));
}

// ---------------------------------------------------------------------------------------------
// DistMuon

/// Matrix shapes in a mixed order: groups of 4×[8,16] +1, 3×[16,8], 2×[8,8], 1×[32,8] (tall, 2× LR),
/// so chunks of 2 and 4 ranks are short (padding) in every group but one.
const MUON_SHAPES: [[i64; 2]; 11] =
    [[16, 8], [8, 16], [8, 8], [16, 8], [8, 16], [8, 16], [32, 8], [8, 8], [8, 16], [16, 8], [8, 16]];
const MUON_LR: f64 = 0.02;

fn muon_initial() -> Vec<Tensor> {
    tch::manual_seed(11);
    MUON_SHAPES.iter().map(|s| Tensor::randn(s.as_slice(), (Kind::Float, Device::Cpu)) * 0.1).collect()
}

fn muon_momentum(step: usize) -> f64 {
    [0.85, 0.9, 0.95, 0.95][step.min(3)]
}

fn dist_muon_matches_muon_body(rank: usize, world: usize, pg: &ProcessGroup) {
    let initial = muon_initial();
    let (dist_params, ref_params) = (leaves(&initial), leaves(&initial));
    let shallow = |ps: &[Tensor]| ps.iter().map(|p| p.shallow_clone()).collect::<Vec<_>>();
    let mut dist = DistMuon::new(shallow(&dist_params), MUON_LR, 0.95, 5, rank, world).unwrap();
    let mut single = Muon::new(shallow(&ref_params), MUON_LR, 0.95, 5);
    // Owners are per shape group, in order: [8,8]: 2,7; [8,16]: 1,4,5,8,10; [16,8]: 0,3,9; [32,8]: 6.
    let groups: Vec<Vec<usize>> = vec![vec![2, 7], vec![1, 4, 5, 8, 10], vec![0, 3, 9], vec![6]];
    assert_eq!(dist.shape_groups(), groups.as_slice());
    assert_eq!(dist.owner(10), 4 % world);
    let (mut worst, mut worst_abs) = (0.0f64, 0.0f64);
    for step in 0..4 {
        for m in [&mut dist.momentum, &mut single.momentum] {
            *m = muon_momentum(step);
        }
        let lrm = if step < 3 { 1.0 } else { 0.5 };
        dist.set_lr_multiplier(lrm);
        single.set_lr_multiplier(lrm);
        for (i, (p, q)) in dist_params.iter().zip(&ref_params).enumerate() {
            set_grad(p, &gradient(&MUON_SHAPES[i], Kind::Float, i, rank, step));
            set_grad(q, &mean_gradient(&MUON_SHAPES[i], Kind::Float, i, world, step));
        }
        dist.step(pg).unwrap();
        single.step();
        assert_same_on_every_rank(pg, &dist_params, "DistMuon");
        for (i, ((p, q), p0)) in dist_params.iter().zip(&ref_params).zip(&initial).enumerate() {
            // Relative to the total update so far: Newton–Schulz runs in bf16.
            let diff = relative_diff(&(p - p0), &(q - p0));
            let abs = (p - q).abs().max().double_value(&[]);
            worst = worst.max(diff);
            worst_abs = worst_abs.max(abs);
            assert!(diff < 1e-2, "W={world} step {step} matrix {i}: difference {diff:e} of the update");
        }
    }
    if rank == 0 {
        eprintln!(
            "DistMuon vs Muon(mean grad), W={world}, 4 steps: max |Δp| {worst_abs:e}, max relative to the update {worst:e}"
        );
    }
}

#[test]
fn dist_muon_matches_muon_on_the_mean_gradient_two_ranks() {
    match worker() {
        Some((rank, world, pg)) => dist_muon_matches_muon_body(rank, world, &pg),
        None => spawn_workers("dist_muon_matches_muon_on_the_mean_gradient_two_ranks", 2),
    }
}

#[test]
fn dist_muon_matches_muon_on_the_mean_gradient_four_ranks() {
    match worker() {
        Some((rank, world, pg)) => dist_muon_matches_muon_body(rank, world, &pg),
        None => spawn_workers("dist_muon_matches_muon_on_the_mean_gradient_four_ranks", 4),
    }
}

fn muon_resume_body(rank: usize, world: usize, pg: &ProcessGroup) {
    let grads = |params: &[Tensor], step: usize| {
        for (i, p) in params.iter().enumerate() {
            set_grad(p, &gradient(&MUON_SHAPES[i], Kind::Float, i, rank, step));
        }
    };
    let shallow = |ps: &[Tensor]| ps.iter().map(|p| p.shallow_clone()).collect::<Vec<_>>();
    let params = leaves(&muon_initial());
    let mut opt = DistMuon::new(shallow(&params), MUON_LR, 0.9, 5, rank, world).unwrap();
    for step in 0..2 {
        grads(&params, step);
        opt.step(pg).unwrap();
    }
    let saved = opt.state_tensors();
    // Momentum lives only on the owners: the ranks' buffers together cover every matrix once.
    let owned: Vec<usize> = (0..MUON_SHAPES.len()).filter(|&i| opt.owner(i) == rank).collect();
    assert_eq!(saved.len(), owned.len() + 1, "buffers of owned matrices plus the world size");
    let mut count = Tensor::from(owned.len() as i64);
    pg.all_reduce(&mut count, ReduceOp::Sum).unwrap();
    assert_eq!(count.int64_value(&[]), MUON_SHAPES.len() as i64);
    let state = through_file(saved, &temp_state_path("muon", rank));
    let snapshot = leaves(&params);
    for step in 2..4 {
        grads(&params, step);
        opt.step(pg).unwrap();
    }
    let mut resumed = DistMuon::new(shallow(&snapshot), MUON_LR, 0.9, 5, rank, world).unwrap();
    resumed.load_state_tensors(&state).unwrap();
    for step in 2..4 {
        grads(&snapshot, step);
        resumed.step(pg).unwrap();
    }
    for (i, (a, b)) in params.iter().zip(&snapshot).enumerate() {
        assert!(a.equal(b), "matrix {i} differs after resuming");
    }
    // Another rank's state is refused.
    let mut wrong_rank = DistMuon::new(shallow(&snapshot), MUON_LR, 0.9, 5, (rank + 1) % world, world).unwrap();
    let err = wrong_rank.load_state_tensors(&state).unwrap_err().to_string();
    assert!(err.contains("does not own"), "{err}");
}

#[test]
fn dist_muon_state_round_trip_continues_identically() {
    match worker() {
        Some((rank, world, pg)) => muon_resume_body(rank, world, &pg),
        None => spawn_workers("dist_muon_state_round_trip_continues_identically", 4),
    }
}

// ---------------------------------------------------------------------------------------------
// The collective schedule: every reduce-scatter of a step is started before the first all-gather,
// and the results are bit-identical to the schedule the optimisers had before their collectives
// went asynchronous (blocking collectives, one parameter or chunk at a time), re-implemented here.

/// DistMuon's former step: per shape group and chunk of W matrices, a blocking reduce-scatter of the
/// zero-padded gradients, the owner's [`MuonUpdate::apply`], a blocking all-gather.
fn chunk_by_chunk_muon_step(
    pg: &ProcessGroup,
    params: &[Tensor],
    groups: &[Vec<usize>],
    buffers: &mut [Option<Tensor>],
    rule: MuonUpdate,
) {
    let (rank, world) = (pg.rank, pg.world_size);
    tch::no_grad(|| {
        for group in groups {
            let first = &params[group[0]];
            let (shape, options, numel) = (first.size(), (first.kind(), first.device()), first.numel() as i64);
            for chunk in group.chunks(world) {
                let parts: Vec<Tensor> = (0..world)
                    .map(|j| {
                        chunk
                            .get(j)
                            .map_or_else(|| Tensor::zeros([numel], options), |&i| params[i].grad().reshape([-1]))
                    })
                    .collect();
                let mut grad = Tensor::zeros(shape.as_slice(), options);
                pg.reduce_scatter(&mut grad, &mut Tensor::cat(&parts, 0), ReduceOp::Avg).unwrap();
                if let Some(&i) = chunk.get(rank) {
                    let buf = buffers[i].get_or_insert_with(|| grad.zeros_like());
                    rule.apply(&params[i], &mut grad, buf);
                }
                let mut send =
                    chunk.get(rank).map_or_else(|| Tensor::zeros([numel], options), |&i| params[i].reshape([-1]));
                let mut gathered = Tensor::empty([world as i64 * numel], options);
                pg.all_gather(&mut gathered, &mut send).unwrap();
                for (j, &i) in chunk.iter().enumerate().filter(|&(j, _)| j != rank) {
                    params[i]
                        .shallow_clone()
                        .copy_(&gathered.narrow(0, j as i64 * numel, numel).view(shape.as_slice()));
                }
            }
        }
    })
}

fn muon_schedule_body(rank: usize, world: usize, pg: &ProcessGroup) {
    let initial = muon_initial();
    let (params, reference) = (leaves(&initial), leaves(&initial));
    let shallow = |ps: &[Tensor]| ps.iter().map(|p| p.shallow_clone()).collect::<Vec<_>>();
    let mut dist = DistMuon::new(shallow(&params), MUON_LR, 0.95, 5, rank, world).unwrap();
    let groups = dist.shape_groups().to_vec();
    let mut buffers: Vec<Option<Tensor>> = params.iter().map(|_| None).collect();
    let chunks: usize = groups.iter().map(|g| g.len().div_ceil(world)).sum();
    for step in 0..4 {
        dist.momentum = muon_momentum(step);
        for (i, (p, q)) in params.iter().zip(&reference).enumerate() {
            let g = gradient(&MUON_SHAPES[i], Kind::Float, i, rank, step);
            set_grad(p, &g);
            set_grad(q, &g);
        }
        pg.start_trace();
        dist.step(pg).unwrap();
        let trace = pg.take_trace();
        let expected = [vec!["reduce_scatter"; chunks], vec!["all_gather"; chunks]].concat();
        assert_eq!(trace, expected, "DistMuon's collectives, W={world}");
        chunk_by_chunk_muon_step(pg, &reference, &groups, &mut buffers, dist.rule());
        for (i, (p, q)) in params.iter().zip(&reference).enumerate() {
            assert!(p.equal(q), "W={world} step {step}: matrix {i} differs from the chunk-by-chunk schedule");
        }
    }
}

#[test]
fn dist_muon_starts_every_reduce_scatter_first_and_matches_the_blocking_schedule_bit_for_bit_two_ranks() {
    match worker() {
        Some((rank, world, pg)) => muon_schedule_body(rank, world, &pg),
        None => spawn_workers(
            "dist_muon_starts_every_reduce_scatter_first_and_matches_the_blocking_schedule_bit_for_bit_two_ranks",
            2,
        ),
    }
}

#[test]
fn dist_muon_starts_every_reduce_scatter_first_and_matches_the_blocking_schedule_bit_for_bit_three_ranks() {
    match worker() {
        Some((rank, world, pg)) => muon_schedule_body(rank, world, &pg),
        None => spawn_workers(
            "dist_muon_starts_every_reduce_scatter_first_and_matches_the_blocking_schedule_bit_for_bit_three_ranks",
            3,
        ),
    }
}

/// DistAdamW's former step: per parameter, a blocking reduce-scatter, the update of this rank's rows,
/// a blocking all-gather.
fn parameter_by_parameter_adamw_step(
    pg: &ProcessGroup,
    groups: &[AdamGroup],
    hyper: AdamHyper,
    step: i64,
    moments: &mut [(Tensor, Tensor)],
) {
    let (rank, world) = (pg.rank as i64, pg.world_size as i64);
    let params = groups.iter().flat_map(|g| g.params.iter().map(move |p| (g.lr, p)));
    tch::no_grad(|| {
        for ((lr, p), (m, v)) in params.zip(moments.iter_mut()) {
            let rows = p.size()[0] / world;
            let mut grad_slice = m.zeros_like();
            pg.reduce_scatter(&mut grad_slice, &mut p.grad().contiguous(), ReduceOp::Avg).unwrap();
            let mut p_slice = p.narrow(0, rank * rows, rows).copy();
            hyper.rule(lr, step).apply(&p_slice, &grad_slice, m, v);
            pg.all_gather(&mut p.shallow_clone(), &mut p_slice).unwrap();
        }
    })
}

fn adamw_schedule_body(rank: usize, world: usize, pg: &ProcessGroup) {
    for eps_mode in [AdamEps::BiasCorrected, AdamEps::Uncorrected] {
        let initial = adam_initial();
        let (params, reference) = (leaves(&initial), leaves(&initial));
        let mut dist = DistAdamW::new(adam_groups(&params), ADAM_BETAS, ADAM_EPS, ADAM_WD, rank, world)
            .unwrap()
            .with_eps_mode(eps_mode);
        let ref_groups = adam_groups(&reference);
        let rows = |p: &Tensor| p.narrow(0, 0, p.size()[0] / world as i64).zeros_like();
        let mut moments: Vec<(Tensor, Tensor)> =
            ref_groups.iter().flat_map(|g| g.params.iter().map(|p| (rows(p), rows(p)))).collect();
        for step in 0..4 {
            let lrm = if step < 2 { 1.0 } else { 0.5 };
            dist.set_lr_multiplier(lrm);
            let mut ref_groups = adam_groups(&reference);
            for g in &mut ref_groups {
                g.lr = g.initial_lr * lrm;
            }
            for (i, ((p, q), (shape, kind, _))) in params.iter().zip(&reference).zip(ADAM_PARAMS).enumerate() {
                let g = gradient(shape, kind, i, rank, step);
                set_grad(p, &g);
                set_grad(q, &g);
            }
            pg.start_trace();
            dist.step(pg).unwrap();
            let n = ADAM_PARAMS.len();
            assert_eq!(pg.take_trace(), [vec!["reduce_scatter"; n], vec!["all_gather"; n]].concat());
            parameter_by_parameter_adamw_step(pg, &ref_groups, dist.hyper, dist.step, &mut moments);
            for (i, (p, q)) in params.iter().zip(&reference).enumerate() {
                assert!(
                    p.equal(q),
                    "W={world} {eps_mode:?} step {step}: parameter {i} differs from the blocking schedule"
                );
            }
        }
    }
}

#[test]
fn dist_adamw_starts_every_reduce_scatter_first_and_matches_the_blocking_schedule_bit_for_bit() {
    match worker() {
        Some((rank, world, pg)) => adamw_schedule_body(rank, world, &pg),
        None => spawn_workers(
            "dist_adamw_starts_every_reduce_scatter_first_and_matches_the_blocking_schedule_bit_for_bit",
            2,
        ),
    }
}
