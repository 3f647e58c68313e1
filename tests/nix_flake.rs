//! The Nix flake (nix/) against the pins it has to agree with, offline. Nothing here builds or even
//! evaluates the flake: that needs nixpkgs and ~2.5 GB of wheels from the network. What is checked:
//! - every `.nix` file under nix/ parses (`nix-instantiate --parse`; Debian's nix-bin, which `make test-setup`
//!   installs);
//! - nix/flake.lock is a version-7 lock whose root inputs resolve, each node locked to a full commit and a
//!   narHash, and it pins the nixpkgs branch flake.nix asks for (and nothing else);
//! - the wheels the flake fetches (nix/wheels.nix, plain data read with `nix-instantiate --eval`) are files
//!   of manifests/python/runtime.lock: same versions, each sha256 one of the pin's hashes, PyPI file names of
//!   those versions; all nvidia-* wheels of the lock, and torch at the libtorch version tch expects;
//! - no other file under nix/ fetches anything, so these checks cover every download of the flake, and the
//!   flake builds with the vendored gloo headers (src/dist/vendor/gloo), as `make build` does.
//!
//! Not checked: that the flake evaluates against nixpkgs (attribute names, hooks), that the hashes are those
//! of the bytes behind the URLs, or that the build succeeds.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine;
use serde_json::Value;

#[path = "support/python_lock.rs"]
mod python_lock;
use python_lock::{normalize, read_lock, Pin};

/// The libtorch release each tch release is generated against (tch's README, torch-sys's TORCH_VERSION).
/// Bumping tch without adding its row here fails `torch_wheel_is_the_libtorch_tch_expects`.
const TCH_LIBTORCH: &[(&str, &str)] = &[("0.24.0", "2.11.0")];

/// The wheels whose headers build.rs compiles the c10d shim against (nvidia/cu13/include, nvidia/nccl/include).
const HEADER_WHEELS: &[&str] = &["nvidia-cuda-crt", "nvidia-cuda-cccl", "nvidia-cuda-runtime", "nvidia-nccl-cu13"];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn nix_dir() -> PathBuf {
    repo().join("nix")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Runs nix-instantiate on a dummy store: nothing is written to (or needed from) /nix.
fn nix_instantiate(args: &[&str], file: &Path) -> Output {
    match Command::new("nix-instantiate").args(["--store", "dummy://"]).args(args).arg(file).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "nix-instantiate is not installed, so the Nix files cannot be checked: `make test-setup` installs \
             Debian's nix-bin (or `apt-get install nix-bin`)"
        ),
        Err(e) => panic!("cannot run nix-instantiate: {e}"),
    }
}

/// Evaluates a plain-data .nix file (no imports, no functions) to JSON.
fn eval_json(file: &Path) -> Value {
    let out = nix_instantiate(&["--eval", "--strict", "--json"], file);
    assert!(out.status.success(), "evaluating {}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{} did not evaluate to JSON: {e}", file.display()))
}

fn nix_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            nix_files(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "nix") {
            found.push(path);
        }
    }
}

fn runtime_lock() -> BTreeMap<String, Pin> {
    read_lock("runtime.lock")
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn str_field<'a>(entry: &'a Value, field: &str, what: &str) -> &'a str {
    entry.get(field).and_then(Value::as_str).unwrap_or_else(|| panic!("{what} has no string `{field}`: {entry}"))
}

fn wheels() -> serde_json::Map<String, Value> {
    let value = eval_json(&nix_dir().join("wheels.nix"));
    let map = value.as_object().cloned().unwrap_or_else(|| panic!("nix/wheels.nix is not an attribute set"));
    assert!(!map.is_empty(), "nix/wheels.nix lists no wheels");
    map
}

/// A line of Nix source without its `#` comment (the checked files keep `#` out of their strings).
fn code(line: &str) -> &str {
    line.split_once('#').map_or(line, |(code, _)| code)
}

#[test]
fn every_nix_file_parses() {
    let mut files = Vec::new();
    nix_files(&nix_dir(), &mut files);
    files.sort();
    let names: BTreeSet<_> = files.iter().filter_map(|f| f.file_name()?.to_str().map(str::to_string)).collect();
    for required in ["flake.nix", "wheels.nix"] {
        assert!(names.contains(required), "nix/{required} is missing (found {names:?})");
    }
    for file in &files {
        let out = nix_instantiate(&["--parse"], file);
        assert!(out.status.success(), "{} does not parse: {}", file.display(), String::from_utf8_lossy(&out.stderr));
    }
}

/// Follows a flake.lock input reference: a node name, or a `follows` path of input names from the root.
fn resolve_input(
    nodes: &serde_json::Map<String, Value>,
    root: &str,
    reference: &Value,
    depth: usize,
) -> Option<String> {
    assert!(depth < 32, "flake.lock: follows chain does not end");
    match reference {
        Value::String(node) => nodes.contains_key(node).then(|| node.clone()),
        Value::Array(path) => {
            let mut node = root.to_string();
            for name in path {
                let next = nodes.get(&node)?.get("inputs")?.get(name.as_str()?)?;
                node = resolve_input(nodes, root, next, depth + 1)?;
            }
            Some(node)
        }
        _ => None,
    }
}

#[test]
fn flake_lock_is_version_7_and_every_input_is_locked() {
    let lock: Value = serde_json::from_str(&read(&nix_dir().join("flake.lock"))).expect("nix/flake.lock is JSON");
    assert_eq!(lock["version"], 7, "flake.lock version");
    let root = lock["root"].as_str().expect("flake.lock has a root node name");
    let nodes = lock["nodes"].as_object().expect("flake.lock has nodes");
    let inputs = nodes.get(root).and_then(|n| n["inputs"].as_object()).expect("the root node has inputs");
    assert!(!inputs.is_empty(), "the root node has no inputs");
    for (name, reference) in inputs {
        assert!(
            resolve_input(nodes, root, reference, 0).is_some(),
            "root input {name} ({reference}) resolves to no node"
        );
    }
    for (name, node) in nodes.iter().filter(|(name, _)| name.as_str() != root) {
        let locked = node.get("locked").unwrap_or_else(|| panic!("node {name} is not locked"));
        let rev = str_field(locked, "rev", name);
        assert!(is_hex(rev, 40), "node {name}: rev {rev:?} is not a full 40-hex commit");
        let nar_hash = str_field(locked, "narHash", name);
        let digest = nar_hash.strip_prefix("sha256-").unwrap_or_else(|| panic!("node {name}: narHash {nar_hash:?}"));
        let bytes = base64::engine::general_purpose::STANDARD.decode(digest);
        assert!(bytes.is_ok_and(|b| b.len() == 32), "node {name}: narHash {nar_hash:?} is not a sha256 digest");
    }
}

#[test]
fn flake_lock_pins_the_nixpkgs_branch_flake_nix_declares_and_nothing_else() {
    let lock: Value = serde_json::from_str(&read(&nix_dir().join("flake.lock"))).expect("nix/flake.lock is JSON");
    let root = lock["root"].as_str().expect("root");
    let inputs: Vec<&String> = lock["nodes"][root]["inputs"].as_object().expect("root inputs").keys().collect();
    assert_eq!(inputs, ["nixpkgs"], "the flake's only input is nixpkgs");
    let node = &lock["nodes"][lock["nodes"][root]["inputs"]["nixpkgs"].as_str().expect("nixpkgs is a node name")];
    let locked = &node["locked"];
    let source = (locked["type"].as_str(), locked["owner"].as_str(), locked["repo"].as_str());
    assert_eq!(source, (Some("github"), Some("NixOS"), Some("nixpkgs")), "nixpkgs is not locked from GitHub");
    let branch = node["original"]["ref"].as_str().expect("nixpkgs is locked from a branch (original.ref)");
    assert!(branch.starts_with("nixos-"), "nixpkgs branch {branch:?} is not a NixOS release channel");
    let flake = read(&nix_dir().join("flake.nix"));
    let wanted = format!("inputs.nixpkgs.url = \"github:NixOS/nixpkgs/{branch}\";");
    assert!(flake.lines().any(|l| code(l).trim() == wanted), "flake.nix does not declare `{wanted}`");
}

#[test]
fn every_fetched_wheel_is_a_runtime_lock_file() {
    let lock = runtime_lock();
    for (name, wheel) in wheels() {
        let what = format!("nix/wheels.nix {name}");
        let pin = lock.get(&normalize(&name)).unwrap_or_else(|| panic!("{what}: not in manifests/python/runtime.lock"));
        let version = str_field(&wheel, "version", &what);
        assert_eq!(version, pin.version, "{what}: version differs from runtime.lock");
        let sha256 = str_field(&wheel, "sha256", &what);
        assert!(pin.sha256.iter().any(|h| h == sha256), "{what}: sha256 {sha256} is none of runtime.lock's");
        let url = str_field(&wheel, "url", &what);
        assert!(url.starts_with("https://files.pythonhosted.org/packages/"), "{what}: {url} is not a PyPI file URL");
        let file = url.rsplit('/').next().unwrap_or_default();
        let prefix = format!("{}-{}-", normalize(&name).replace('-', "_"), pin.version);
        assert!(file.starts_with(&prefix), "{what}: file {file} is not a wheel of {prefix}*");
        assert!(file.ends_with(".whl") && file.contains("x86_64"), "{what}: {file} is not a Linux x86_64 wheel");
        assert!(
            file.contains("-cp311-") || file.contains("-py3-none-"),
            "{what}: {file} is neither a CPython 3.11 nor a pure-Python-tag wheel (nix/libtorch.nix lays the \
             wheels out as CPython 3.11's site-packages)"
        );
    }
}

#[test]
fn flake_fetches_torch_and_every_nvidia_wheel_of_the_lock_and_nothing_else() {
    let fetched: BTreeSet<String> = wheels().keys().map(|n| normalize(n)).collect();
    let wanted: BTreeSet<String> =
        runtime_lock().into_keys().filter(|n| n == "torch" || n.starts_with("nvidia-")).collect();
    assert!(wanted.contains("torch"), "runtime.lock pins no torch");
    for header in HEADER_WHEELS {
        assert!(wanted.contains(*header), "runtime.lock lacks the header wheel {header}");
    }
    assert_eq!(fetched, wanted, "nix/wheels.nix must hold exactly torch and runtime.lock's nvidia-* wheels");
}

fn cargo_lock_version(lock: &toml::Value, package: &str) -> String {
    let packages = lock["package"].as_array().expect("Cargo.lock has packages");
    let found: Vec<&str> =
        packages.iter().filter(|p| p["name"].as_str() == Some(package)).filter_map(|p| p["version"].as_str()).collect();
    assert_eq!(found.len(), 1, "Cargo.lock has {} versions of {package}", found.len());
    found[0].to_string()
}

#[test]
fn torch_wheel_is_the_libtorch_tch_expects() {
    let cargo_lock: toml::Value = toml::from_str(&read(&repo().join("Cargo.lock"))).expect("Cargo.lock is TOML");
    let tch = cargo_lock_version(&cargo_lock, "tch");
    assert_eq!(cargo_lock_version(&cargo_lock, "torch-sys"), tch, "tch and torch-sys are released together");
    let libtorch =
        TCH_LIBTORCH.iter().find(|(t, _)| *t == tch).map(|(_, l)| *l).unwrap_or_else(|| {
            panic!("tch {tch} is not in TCH_LIBTORCH: add the libtorch version it is generated for")
        });
    let wheels = wheels();
    let torch = wheels.get("torch").expect("nix/wheels.nix fetches no torch wheel");
    assert_eq!(str_field(torch, "version", "torch"), libtorch, "torch wheel vs tch {tch}");
    assert_eq!(runtime_lock()["torch"].version, libtorch, "runtime.lock's torch vs tch {tch}");
}

#[test]
fn nothing_else_under_nix_fetches_and_the_build_reads_the_checked_pins() {
    let mut files = Vec::new();
    nix_files(&nix_dir(), &mut files);
    let mut sources = String::new();
    for file in &files {
        if file.file_name().is_some_and(|n| n == "wheels.nix") {
            continue;
        }
        let text = read(file);
        // The flake's inputs are flake.lock's business (checked above), not fetches.
        for line in text.lines().map(code).filter(|l| !l.trim_start().starts_with("inputs.")) {
            for pinned in ["url =", "urls =", "sha256 =", "hash =", "builtins.fetch", "fetchFromGitHub", "fetchzip"] {
                assert!(!line.contains(pinned), "{} fetches outside wheels.nix: {line:?}", file.display());
            }
            sources.push_str(line);
            sources.push('\n');
        }
    }
    for needed in ["import ./wheels.nix", "LIBTORCH =", "fetchurl {"] {
        assert!(sources.contains(needed), "no `{needed}` in the flake's code");
    }
    // build.rs's default, the headers in the source tree the flake builds.
    assert!(
        !sources.contains("NANOCHAT_GLOO_INCLUDE"),
        "the flake must build with the vendored gloo headers (src/dist/vendor/gloo), as `make build` does"
    );
    assert!(repo().join("src/dist/vendor/gloo/include/gloo/context.h").is_file(), "no vendored gloo headers");
    // The libtorch derivation writes torch/build-version so torch-sys's version check runs; nothing bypasses it.
    assert!(!sources.contains("LIBTORCH_BYPASS_VERSION_CHECK"), "the flake bypasses torch-sys's version check");
    assert!(!sources.contains("LIBTORCH_USE_PYTORCH"), "the flake must take libtorch from LIBTORCH, not Python");
}
