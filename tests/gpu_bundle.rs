//! The GPU bundle (`make gpu-bundle`, tests/gpu/) as a bare GPU machine would get it, checked on this CPU
//! machine: the bundle copied to a fresh directory runs `gpu_check.sh` against a venv at another path whose python
//! imports the build's torch, inside `unshare -n -m` (root) where the repository and the build's libtorch dir (the
//! binaries' rpath) are hidden under empty tmpfs mounts and nothing but loopback exists. Every CPU step must pass
//! and every GPU check be reported skipped. Also: a damaged file fails the integrity check by name, and a torch
//! that is not 2.11.x is refused with the message saying what to install.
//! `make test` stages the bundle first; running cargo from inside a test would rebuild the dependency graph (build
//! scripts watch the CARGO_* variables cargo sets for tests).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const CPU_STEPS: [&str; 5] = ["integrity", "torch-version", "libtorch", "syntax", "data"];
const GPU_CHECKS: [&str; 8] =
    ["doctor", "precision", "smoke", "collectives", "pointwise", "train-d20", "train-d20-compiled", "decode"];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The python of the build (the Makefile exports NANOCHAT_PYTHON), whose torch the binaries link.
fn build_python() -> PathBuf {
    std::env::var_os("NANOCHAT_PYTHON").map_or_else(|| repo().join(".venv/bin/python"), PathBuf::from)
}

/// target/gpu-bundle, which `make test` stages (`make gpu-bundle`) before running this; it must hold the binary
/// under test (stripped) and the scripts of this checkout, else it is stale.
fn bundle() -> &'static Path {
    static BUNDLE: OnceLock<PathBuf> = OnceLock::new();
    BUNDLE.get_or_init(|| {
        let dir = repo().join("target/gpu-bundle");
        let stale = |what: &str| panic!("{} {what}: run `make gpu-bundle` (make test does)", dir.display());
        if !dir.join("MANIFEST").is_file() {
            stale("is missing");
        }
        let stripped = tempfile::NamedTempFile::new().unwrap();
        let strip = Command::new("strip").arg("-o").arg(stripped.path()).arg(env!("CARGO_BIN_EXE_nanochat")).output();
        assert!(strip.as_ref().is_ok_and(|o| o.status.success()), "strip: {strip:?}");
        for (bundled, source) in [
            ("nanochat", stripped.path().to_path_buf()),
            ("gpu_check.sh", repo().join("tests/gpu/gpu_check.sh")),
            ("bench_train.py", repo().join("tests/bench/bench_train.py")),
        ] {
            if std::fs::read(dir.join(bundled)).ok() != Some(std::fs::read(&source).unwrap()) {
                stale(&format!("holds another {bundled} than this build's"));
            }
        }
        dir
    })
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A copy of the bundle under `dir`.
fn copy_bundle(dir: &Path) -> PathBuf {
    let copy = dir.join("bundle");
    let status = Command::new("cp").arg("-a").arg(bundle()).arg(&copy).status().unwrap();
    assert!(status.success());
    copy
}

/// "== CHECK name: result" lines, by name (each must appear once).
fn checks(output: &str) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    for line in output.lines() {
        if let Some((name, result)) = line.strip_prefix("== CHECK ").and_then(|l| l.split_once(": ")) {
            assert!(found.insert(name.to_string(), result.to_string()).is_none(), "{name} reported twice:\n{output}");
        }
    }
    found
}

/// A python expression's value, printed by `python`.
fn python_value(python: &Path, expression: &str) -> String {
    let out = Command::new(python).args(["-c", &format!("print({expression})")]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn on_a_cpu_machine_without_the_build_or_network_every_cpu_step_passes_and_every_gpu_check_is_skipped() {
    let work = tempfile::tempdir().unwrap();
    let copy = copy_bundle(work.path());
    // A venv at another path; the build's site-packages are bind-mounted into it inside the namespace, before
    // the build's venv, its libtorch dir and the repository disappear under tmpfs.
    let python = build_python();
    let venv = work.path().join("venv");
    let made = Command::new(&python).args(["-m", "venv", "--without-pip"]).arg(&venv).output().unwrap();
    assert!(made.status.success(), "{}", text(&made));
    let purelib = "__import__('sysconfig').get_path('purelib')";
    let (build_site, venv_site) = (python_value(&python, purelib), python_value(&venv.join("bin/python"), purelib));
    assert_ne!(build_site, venv_site);
    let build = std::fs::read_to_string(copy.join("BUILD")).unwrap();
    let runpath = build.lines().find_map(|l| l.strip_prefix("runpath=")).expect("BUILD records the rpath");
    let build_libs: Vec<&str> = runpath.split(':').filter(|d| Path::new(d).join("libtorch_cpu.so").is_file()).collect();
    assert!(!build_libs.is_empty(), "the build's libtorch is in none of {runpath}");

    let out_dir = work.path().join("out");
    // Hidden: the build's venv (when the build's python is one), its libtorch dir and the repository.
    let build_venv =
        python_value(&python, "(lambda s: s.prefix if s.prefix != s.base_prefix else '')(__import__('sys'))");
    let hide = [&[build_venv.as_str()], build_libs.as_slice(), &[repo().to_str().unwrap()]].concat();
    let script = r#"set -e
ip link set lo up
mount --bind "$1" "$2"
shift 2
for dir in "$@"; do if [ -d "$dir" ]; then mount -t tmpfs nothing "$dir"; fi; done
test ! -e "$BUILD_LIB/libtorch_cpu.so"
test -z "$BUILD_VENV" || test ! -e "$BUILD_VENV/pyvenv.cfg"
test ! -e "$REPO/Cargo.toml"
if python3 -c 'import socket; socket.create_connection(("pypi.org", 443), timeout=5)' 2>/dev/null; then exit 99; fi
exec "$BUNDLE/gpu_check.sh" "$OUT""#;
    let out = Command::new("unshare")
        .args(["-n", "-m", "bash", "-c", script, "namespace"])
        .args([&build_site, &venv_site])
        .args(&hide)
        .env_clear()
        .env("PATH", format!("{}:/usr/local/bin:/usr/bin:/bin", venv.join("bin").display()))
        .env("HOME", work.path())
        .env("LANG", "C.UTF-8")
        .env("BUILD_LIB", build_libs[0])
        .env("BUILD_VENV", &build_venv)
        .env("REPO", repo())
        .env("BUNDLE", &copy)
        .env("OUT", &out_dir)
        .output()
        .unwrap();
    let output = text(&out);
    assert!(out.status.success(), "gpu_check.sh exited with {:?}:\n{output}", out.status.code());
    let found = checks(&output);
    for step in CPU_STEPS {
        assert!(found.get(step).is_some_and(|r| r.starts_with("ok (")), "{step}: {:?}\n{output}", found.get(step));
    }
    for check in GPU_CHECKS {
        let result = found.get(check).map_or("", String::as_str);
        assert!(result.starts_with("skipped (no NVIDIA GPU: nvidia-smi "), "{check}: {result}\n{output}");
    }
    assert_eq!(found.len(), CPU_STEPS.len() + GPU_CHECKS.len(), "{output}");
    let venv_lib = Path::new(&venv_site).join("torch/lib");
    assert!(output.contains(&format!("using {} (LD_LIBRARY_PATH)", venv_lib.display())), "{output}");
    assert!(output.contains("| decode | skipped (no NVIDIA GPU"), "the final table\n{output}");
    assert!(out_dir.join("smoke/data/smoke/shard_00005.parquet").is_file(), "the data step fetched the shards");
}

#[test]
fn a_damaged_file_fails_the_integrity_check_by_name() {
    let work = tempfile::tempdir().unwrap();
    let copy = copy_bundle(work.path());
    let damaged = copy.join("data/smoke/shard_00003.parquet");
    let mut bytes = std::fs::read(&damaged).unwrap();
    bytes[1000] ^= 1;
    std::fs::write(&damaged, bytes).unwrap();
    let out = Command::new(copy.join("gpu_check.sh")).arg(work.path().join("out")).output().unwrap();
    let output = text(&out);
    assert_eq!(out.status.code(), Some(1), "{output}");
    assert!(output.contains("data/smoke/shard_00003.parquet: FAILED"), "{output}");
    let found = checks(&output);
    assert!(found["integrity"].starts_with("FAILED"), "{output}");
    assert!(found["libtorch"].starts_with("skipped (the bundle is incomplete or damaged"), "{output}");
}

#[test]
fn a_torch_that_is_not_2_11_is_refused() {
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir(work.path().join("torch")).unwrap();
    std::fs::write(work.path().join("torch/__init__.py"), "__version__ = '2.10.0+cu128'\n").unwrap();
    let out = Command::new(bundle().join("gpu_check.sh"))
        .arg(work.path().join("out"))
        .env("PYTHON", build_python())
        .env("PYTHONPATH", work.path())
        .output()
        .unwrap();
    let output = text(&out);
    assert_eq!(out.status.code(), Some(1), "{output}");
    assert!(
        output.contains("has torch 2.10.0+cu128, and this bundle is built against libtorch 2.11 (torch==2.11.0): install torch==2.11.0"),
        "{output}"
    );
    let found = checks(&output);
    assert_eq!(found["integrity"].split(' ').next(), Some("ok"), "{output}");
    assert!(found["torch-version"].starts_with("FAILED"), "{output}");
    assert!(found["data"].starts_with("skipped (needs torch 2.11)"), "{output}");
}
