//! c10d collectives over Gloo with 2 and 4 processes on 127.0.0.1. The test re-runs its own binary
//! as the worker ranks (selected by environment variables) and checks every op's result.
#[path = "support/rank_workers.rs"]
mod rank_workers;

use std::time::Duration;

use nanochat::dist::{Backend, ProcessGroup, ReduceOp};
use tch::{Device, Kind, Tensor};

const ROLE: &str = "NANOCHAT_TEST_COLLECTIVE_RANK";

fn spawn_workers(test_name: &str, world: usize) {
    rank_workers::spawn_workers(ROLE, test_name, world)
}

fn worker() -> Option<(usize, usize, ProcessGroup)> {
    rank_workers::worker(ROLE, Duration::from_secs(60))
}

fn ops_body(rank: usize, world: usize, pg: &ProcessGroup) {
    let w = world as f64;
    for kind in [Kind::Float, Kind::BFloat16, Kind::Double, Kind::Int64] {
        // all_reduce sum / avg / max of rank-dependent values.
        let mut t = Tensor::arange(6, (Kind::Float, Device::Cpu)).to_kind(kind) + (rank as f64);
        pg.all_reduce(&mut t, ReduceOp::Sum).unwrap();
        let expected = (Tensor::arange(6, (Kind::Float, Device::Cpu)) * w + w * (w - 1.0) / 2.0).to_kind(kind);
        assert!(t.equal(&expected), "{kind:?} sum: {t:?}");
        let mut m = Tensor::from_slice(&[rank as f32, -(rank as f32)]).to_kind(kind);
        pg.all_reduce(&mut m, ReduceOp::Max).unwrap();
        assert!(m.equal(&Tensor::from_slice(&[(world - 1) as f32, 0.0]).to_kind(kind)), "{kind:?} max");
    }
    let mut a = Tensor::from_slice(&[rank as f32 * 2.0, 1.0]);
    pg.all_reduce(&mut a, ReduceOp::Avg).unwrap();
    assert!(a.allclose(&Tensor::from_slice(&[(world - 1) as f32, 1.0]), 1e-6, 1e-6, false), "avg {a:?}");

    // reduce_scatter: rank r contributes [r*10 + i for i in 0..world*3]; slice s gets the sum over ranks.
    let mut input = Tensor::arange((world * 3) as i64, (Kind::Float, Device::Cpu)) + (rank * 10) as f64;
    let mut out = Tensor::zeros([3], (Kind::Float, Device::Cpu));
    pg.reduce_scatter(&mut out, &mut input, ReduceOp::Avg).unwrap();
    let base = Tensor::arange_start((rank * 3) as i64, (rank * 3 + 3) as i64, (Kind::Float, Device::Cpu));
    let mean_offset = 10.0 * (w - 1.0) / 2.0;
    assert!(out.allclose(&(base + mean_offset), 1e-5, 1e-5, false), "reduce_scatter avg {out:?}");

    // all_gather: every rank sends [rank, rank]; everyone gets [0,0,1,1,...].
    let mut mine = Tensor::from_slice(&[rank as f32, rank as f32]);
    let mut all = Tensor::zeros([2 * world as i64], (Kind::Float, Device::Cpu));
    pg.all_gather(&mut all, &mut mine).unwrap();
    let want: Vec<f32> = (0..world).flat_map(|r| [r as f32, r as f32]).collect();
    assert!(all.equal(&Tensor::from_slice(&want)));

    // broadcast from the last rank, then a barrier.
    let mut b = Tensor::from_slice(&[rank as i64; 4]);
    pg.broadcast(&mut b, world - 1).unwrap();
    assert!(b.equal(&Tensor::from_slice(&[(world - 1) as i64; 4])));
    pg.barrier().unwrap();

    // Misuse gives an error with the reason, not a crash.
    let mut wrong = Tensor::zeros([5], (Kind::Float, Device::Cpu));
    let err = pg.all_gather(&mut wrong, &mut mine).unwrap_err();
    assert!(err.to_string().contains("expected"), "{err}");
}

#[test]
fn every_collective_on_two_ranks() {
    match worker() {
        Some((rank, world, pg)) => ops_body(rank, world, &pg),
        None => spawn_workers("every_collective_on_two_ranks", 2),
    }
}

#[test]
fn every_collective_on_four_ranks() {
    match worker() {
        Some((rank, world, pg)) => ops_body(rank, world, &pg),
        None => spawn_workers("every_collective_on_four_ranks", 4),
    }
}

/// The `_async` forms: two collectives in flight at once and waited for in reverse order (an average
/// among them, which Gloo finishes at the wait), the trace of what was started, and a `Work` dropped
/// without a wait, which must leave the next collectives working.
fn async_body(rank: usize, world: usize, pg: &ProcessGroup) {
    let (w, r) = (world as f64, rank as f64);
    pg.start_trace();
    let averaged = Tensor::from_slice(&[r + 1.0, 2.0 * r]);
    let input = Tensor::arange((world * 2) as i64, (Kind::Double, Device::Cpu)) + 100.0 * r;
    let scattered = Tensor::zeros([2], (Kind::Double, Device::Cpu));
    let first = pg.all_reduce_async(&averaged, ReduceOp::Avg).unwrap();
    let second = pg.reduce_scatter_async(&scattered, &input, ReduceOp::Sum).unwrap();
    second.wait().unwrap();
    first.wait().unwrap();
    assert!(averaged.equal(&Tensor::from_slice(&[(w + 1.0) / 2.0, w - 1.0])), "avg {averaged:?}");
    // Slice s of rank r's input is [2s, 2s+1] + 100 r; summed over the ranks.
    let mine = Tensor::from_slice(&[2.0 * r, 2.0 * r + 1.0]) * w + 100.0 * w * (w - 1.0) / 2.0;
    assert!(scattered.equal(&mine), "reduce_scatter {scattered:?}");

    let sent = Tensor::from_slice(&[rank as i64 * 10]);
    let gathered = Tensor::zeros([world as i64], (Kind::Int64, Device::Cpu));
    let broadcast = Tensor::from_slice(&[rank as i64; 3]);
    let works = [pg.all_gather_async(&gathered, &sent).unwrap(), pg.broadcast_async(&broadcast, 0).unwrap()];
    for work in works.into_iter().rev() {
        work.wait().unwrap();
    }
    let tens: Vec<i64> = (0..world as i64).map(|r| r * 10).collect();
    assert!(gathered.equal(&Tensor::from_slice(&tens)), "all_gather {gathered:?}");
    assert!(broadcast.equal(&Tensor::from_slice(&[0i64; 3])), "broadcast {broadcast:?}");
    assert_eq!(pg.take_trace(), ["all_reduce", "reduce_scatter", "all_gather", "broadcast"]);
    assert!(pg.take_trace().is_empty(), "tracing stops at take_trace");

    // Dropped without a wait, with its tensor: c10d still completes it, and what follows is unaffected.
    let dropped = Tensor::ones([1 << 16], (Kind::Float, Device::Cpu));
    drop(pg.all_reduce_async(&dropped, ReduceOp::Avg).unwrap());
    drop(dropped);
    let mut next = Tensor::from_slice(&[rank as i64]);
    pg.all_reduce(&mut next, ReduceOp::Sum).unwrap();
    assert_eq!(next.int64_value(&[0]), (world * (world - 1) / 2) as i64);
    pg.barrier().unwrap();
}

#[test]
fn async_collectives_on_two_ranks() {
    match worker() {
        Some((rank, world, pg)) => async_body(rank, world, &pg),
        None => spawn_workers("async_collectives_on_two_ranks", 2),
    }
}

#[test]
fn async_collectives_on_three_ranks() {
    match worker() {
        Some((rank, world, pg)) => async_body(rank, world, &pg),
        None => spawn_workers("async_collectives_on_three_ranks", 3),
    }
}

#[test]
fn unreachable_master_is_a_clear_error() {
    if std::env::var(ROLE).is_ok() {
        return;
    }
    let port = rank_workers::free_port(); // nothing listens there
    let started = std::time::Instant::now();
    let err =
        ProcessGroup::new(Backend::Gloo, "127.0.0.1", port, 1, 2, Duration::from_secs(3)).err().expect("no master");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(err.op, "init");
    assert!(!err.message.is_empty(), "{err}");
}

#[test]
fn port_in_use_is_a_clear_error() {
    if std::env::var(ROLE).is_ok() {
        return;
    }
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let err =
        ProcessGroup::new(Backend::Gloo, "127.0.0.1", port, 0, 1, Duration::from_secs(3)).err().expect("port busy");
    assert!(err.message.to_lowercase().contains("address already in use") || err.message.contains("bind"), "{err}");
}
