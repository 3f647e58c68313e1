//! The operator counter behind `bench train --profile` (src/op_count.rs). Counting is process-wide, so
//! this binary holds one test: nothing else dispatches operators while it counts.
use nanochat::op_count::{Counts, OpCounter};
use tch::{Device, Kind, Tensor};

#[test]
fn counts_operators_kernels_and_syncs_by_phase() {
    let x = Tensor::ones([4, 4], (Kind::Float, Device::Cpu));
    let counter = OpCounter::start().unwrap();
    counter.phase(1);
    // Two kernels (the multiply and the add) and a view.
    let y = (&x * 2.0 + 1.0).view([16]);
    counter.phase(2);
    // A reduction read back: one kernel and one host sync.
    let total = y.sum(Kind::Float).double_value(&[]);
    let counts = counter.finish().unwrap();
    assert_eq!(total, 48.0);
    assert_eq!(counts[0], Counts::default());
    assert_eq!((counts[1].kernels, counts[1].host_syncs), (2, 0), "{:?}", counts[1]);
    assert!(counts[1].leaves > counts[1].kernels && counts[1].ops >= counts[1].leaves, "{:?}", counts[1]);
    assert_eq!((counts[2].kernels, counts[2].host_syncs), (1, 1), "{:?}", counts[2]);
    // Nothing is counted once finished, and a new count starts from zero.
    let _ = &x * 3.0;
    let again = OpCounter::start().unwrap();
    let _ = &x * 3.0;
    let again = again.finish().unwrap();
    assert_eq!(again[0].kernels, 1, "{:?}", again[0]);
    assert!(again[1..].iter().all(|c| *c == Counts::default()));
}
