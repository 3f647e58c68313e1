//! The two Python locks split by purpose (manifests/python/, README "Try it"): runtime.lock
//! is all `make setup` installs, so none of the test-only packages may be in it; test.lock adds them on top
//! (`make test-setup` installs both files in one pip call, so a package may not be in both). Offline: which
//! wheels the hashes belong to is relock.py's business, but torch, the one package with a wheel per CPython,
//! must carry one hash for each of 3.10-3.13.
#[path = "support/python_lock.rs"]
mod python_lock;
use python_lock::read_lock;

/// What tests/ and tests/bench/ import from test.lock (the oracles, the OpenAI client, the browser driver).
const TEST_ONLY: &[&str] = &["rustbpe", "tiktoken", "tokenizers", "pyarrow", "numpy", "openai", "selenium"];

#[test]
fn the_test_only_packages_are_in_test_lock_and_not_in_runtime_lock() {
    let runtime = read_lock("runtime.lock");
    let test = read_lock("test.lock");
    for name in TEST_ONLY {
        assert!(!runtime.contains_key(*name), "{name} is test-only but in runtime.lock, which make setup installs");
        assert!(test.contains_key(*name), "{name} is missing from test.lock");
    }
    let both: Vec<&String> = runtime.keys().filter(|name| test.contains_key(*name)).collect();
    assert!(both.is_empty(), "in both locks (pip refuses a double requirement): {both:?}");
}

#[test]
fn torch_has_a_wheel_for_each_cpython_3_10_to_3_13() {
    let runtime = read_lock("runtime.lock");
    let torch = runtime.get("torch").expect("runtime.lock pins torch");
    assert_eq!(torch.sha256.len(), 4, "torch {}: one cp310, cp311, cp312 and cp313 wheel each", torch.version);
}
