//! Python's random number generators, bit for bit, so that every example the reference draws is
//! drawn here too: CPython's `random.Random` and tuple `hash()` ([`python`]) and numpy's
//! `default_rng` permutations ([`numpy`]). A leaf: it depends on nothing else in the crate.
pub mod numpy;
pub mod python;
