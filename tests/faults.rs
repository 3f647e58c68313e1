//! Faults lose nothing. The tiny smoke speedrun (tests/support/tiny_speedrun.rs) is run once
//! uninterrupted; its checkpoints, tokenizer, shards and report numbers are the reference that
//! every faulty run must end with:
//! - killed (SIGKILL to the whole process group, the speedrun and its stage) at seeded points and
//!   rerun (`NANOCHAT_FAULT_SEED` picks the stages and how far into each, as a fraction of its
//!   time in the reference run);
//! - a checkpoint, a download and the report written with too little room (RLIMIT_FSIZE, and a
//!   small tmpfs where this process may mount one): a clear error, finished files intact, and a
//!   rerun that continues;
//! - a truncated checkpoint and a flipped byte in a shard, caught by the stage records on rerun.
mod common;
#[path = "support/real_text.rs"]
mod real_text;
#[path = "support/tiny_speedrun.rs"]
mod tiny_speedrun;

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use nanochat::fsutil::human_bytes;
use nanochat::speedrun::digest::sha256_file;
use tiny_speedrun::{text, TinySpeedrun};

/// On top of the tiny run: a checkpoint every few steps, so a killed training stage has one to
/// resume from, and fewer RL samples to keep the repeated runs short.
const FAULT_SETS: &[&str] =
    &["base_train.save_every=4", "mid_train.save_every=2", "chat_sft.save_every=2", "chat_rl.num_samples=4"];
use tiny_speedrun::SMOKE_STAGES as STAGES;
const SHARDS: &str = "data/fineweb-edu-100b";
const DEFAULT_FAULT_SEED: u64 = 39;
/// Kills per sweep.
const KILLS: usize = 4;
/// Longest wait for a run to reach a stage.
const STAGE_TIMEOUT: Duration = Duration::from_secs(1200);

/// What a finished run leaves that must not depend on faults on the way.
#[derive(Debug, Clone, PartialEq)]
struct Fingerprint {
    /// sha256 by path under the base dir: every file of the checkpoint directories (hidden ones too,
    /// so temporary files left behind show up), the tokenizer and the shards.
    files: BTreeMap<String, String>,
    /// "section / key: value" of every numeric value in the report's sections (timings and the
    /// step a stage resumed from left out) and every table row, the summary table included.
    numbers: Vec<String>,
}

impl Fingerprint {
    fn of(base: &Path) -> Self {
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(base).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let checkpoints = ["base_d", "mid_d", "sft_d", "rl_d"].iter().any(|p| name.starts_with(p));
            if checkpoints && entry.path().is_dir() {
                for file in std::fs::read_dir(entry.path()).unwrap().flatten() {
                    let file_name = file.file_name().to_string_lossy().into_owned();
                    if ["model_", "optim_", "meta_", "."].iter().any(|p| file_name.starts_with(p)) {
                        files.insert(format!("{name}/{file_name}"), sha256_file(&file.path()).unwrap());
                    }
                }
            }
        }
        for file in ["tok/tokenizer.json", "tok/tokenizer.ranks", "tok/token_bytes.json"] {
            files.insert(file.to_string(), sha256_file(&base.join(file)).unwrap());
        }
        for file in std::fs::read_dir(base.join(SHARDS)).unwrap().flatten() {
            let name = file.file_name().to_string_lossy().into_owned();
            if name.ends_with(".parquet") {
                files.insert(format!("{SHARDS}/{name}"), sha256_file(&file.path()).unwrap());
            }
        }
        let report = std::fs::read_to_string(base.join("report/report.md")).unwrap();
        Fingerprint { files, numbers: report_numbers(&report, base) }
    }

    /// The files under `prefix`.
    fn files_under(&self, prefix: &str) -> BTreeMap<String, String> {
        self.files.iter().filter(|(p, _)| p.starts_with(prefix)).map(|(p, d)| (p.clone(), d.clone())).collect()
    }
}

fn report_numbers(report: &str, base: &Path) -> Vec<String> {
    let body = &report[report.find("\n## Hardware check").expect("the report has sections")..];
    // The Provenance section lists when each stage ran and for how long: its file digests are the
    // ones `Fingerprint` compares, its times differ from run to run.
    let body = &body[..body.find("\n## Provenance").unwrap_or(body.len())];
    let mut section = "";
    let mut numbers = Vec::new();
    for line in body.lines() {
        if let Some(title) = line.strip_prefix("## ") {
            section = title;
        } else if line.starts_with('|') {
            numbers.push(format!("{section} / {}", line.replace(&base.display().to_string(), "<base>")));
        } else if let Some((key, value)) = line.strip_prefix("- ").and_then(|l| l.split_once(": ")) {
            // Timings differ from run to run; a resumed stage says where it resumed.
            let timing = key.to_lowercase().contains("time");
            if !timing && key != "Resumed from step" && value.replace(',', "").parse::<f64>().is_ok() {
                numbers.push(format!("{section} / {key}: {value}"));
            }
        }
    }
    numbers
}

/// The uninterrupted run every test compares with.
struct Reference {
    base: PathBuf,
    fingerprint: Fingerprint,
    /// Wall time of each stage, seconds.
    stage_seconds: BTreeMap<String, f64>,
}

fn tiny() -> &'static TinySpeedrun {
    static TINY: OnceLock<TinySpeedrun> = OnceLock::new();
    TINY.get_or_init(|| TinySpeedrun::new(&common::temp_dir("faults-mirror")).with(FAULT_SETS))
}

fn reference() -> &'static Reference {
    static REFERENCE: OnceLock<Reference> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let base = common::temp_dir("faults-reference");
        let clock = Instant::now();
        let out = tiny().speedrun(&base, &[]).output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
        eprintln!("faults: the uninterrupted reference run took {:.0} s", clock.elapsed().as_secs_f64());
        let fingerprint = Fingerprint::of(&base);
        for phase in ["base_d1/model_000004", "mid_d1/model_000002", "sft_d1/model_000002", "rl_d1/model_000002"] {
            assert!(fingerprint.files.keys().any(|f| f.starts_with(phase)), "{phase}: {:?}", fingerprint.files);
        }
        assert!(
            fingerprint.numbers.iter().any(|n| n.starts_with("Summary / | ChatCORE |")),
            "{:?}",
            fingerprint.numbers
        );
        assert!(fingerprint.numbers.iter().any(|n| n.starts_with("Base model training / Minimum validation bpb")));
        let stage_seconds = STAGES
            .iter()
            .map(|stage| {
                let record = std::fs::read_to_string(base.join(format!("speedrun/{stage}.json"))).unwrap();
                let record: serde_json::Value = serde_json::from_str(&record).unwrap();
                (stage.to_string(), record["wall_time_s"].as_f64().unwrap())
            })
            .collect();
        Reference { base, fingerprint, stage_seconds }
    })
}

/// splitmix64: the kill points of a sweep from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A speedrun in its own process group, its console output collected as it comes.
struct Running {
    child: Child,
    output: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Running {
    fn start(mut command: Command) -> Self {
        command.process_group(0).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        let streams: Vec<Box<dyn Read + Send>> =
            vec![Box::new(child.stdout.take().unwrap()), Box::new(child.stderr.take().unwrap())];
        let readers = streams
            .into_iter()
            .map(|mut stream| {
                let output = Arc::clone(&output);
                std::thread::spawn(move || {
                    let mut buffer = [0u8; 4096];
                    while let Ok(n @ 1..) = stream.read(&mut buffer) {
                        output.lock().unwrap().push_str(&String::from_utf8_lossy(&buffer[..n]));
                    }
                })
            })
            .collect();
        Running { child, output, readers }
    }

    /// Waits until a stage at position `from` of [`STAGES`] or later logs that it runs; returns it.
    fn wait_for_stage(&mut self, from: usize) -> &'static str {
        let deadline = Instant::now() + STAGE_TIMEOUT;
        loop {
            let said = self.output.lock().unwrap().clone();
            let running = said.lines().filter_map(running_stage).find(|s| stage_index(s) >= from);
            if let Some(stage) = running {
                return STAGES[stage_index(stage)];
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the speedrun ended ({status}) before any stage from {} ran:\n{said}", STAGES[from]);
            }
            assert!(Instant::now() < deadline, "no stage from {} ran within {STAGE_TIMEOUT:?}:\n{said}", STAGES[from]);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits `delay`, or less when `stage` finishes first (so the run is still under way at the kill).
    fn wait_into(&mut self, stage: &str, delay: Duration) {
        let (deadline, finished) = (Instant::now() + delay, format!("] {stage}: finished in "));
        while Instant::now() < deadline && !self.output.lock().unwrap().contains(&finished) {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the speedrun ended ({status}) during {stage}:\n{}", self.output.lock().unwrap());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL to the process group (the speedrun and its stage); the exit status and the output.
    fn kill(mut self) -> (ExitStatus, String) {
        // SAFETY: signals the process group this test started (its pgid is the child's pid).
        assert_eq!(unsafe { libc::killpg(self.child.id() as libc::pid_t, libc::SIGKILL) }, 0);
        let status = self.child.wait().unwrap();
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        let said = self.output.lock().unwrap().clone();
        (status, said)
    }
}

/// The stage of an orchestrator line "[6/15] base-train: running (reason)".
fn running_stage(line: &str) -> Option<&str> {
    let rest = &line[line.find("] ")? + 2..];
    rest.split_once(": running (").map(|(stage, _)| stage)
}

fn stage_index(stage: &str) -> usize {
    STAGES.iter().position(|s| *s == stage).unwrap_or_else(|| panic!("unknown stage {stage}"))
}

fn run_ok(mut command: Command) -> String {
    let out = command.output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    text(&out)
}

/// Every file of the reference that exists under `base` has the reference's bytes: nothing torn or
/// half-written sits under a final name.
fn assert_no_torn_files(base: &Path, reference: &Fingerprint, after: &str) {
    for (path, digest) in &reference.files {
        let file = base.join(path);
        if file.exists() {
            assert_eq!(&sha256_file(&file).unwrap(), digest, "{path} after {after}");
        }
    }
}

/// What a run resumed (the orchestrator's decision, the stage's starting step).
fn print_resumptions(said: &str) {
    for line in said.lines().filter(|l| l.contains("resuming")) {
        eprintln!("fault sweep:   {line}");
    }
}

#[test]
fn a_speedrun_killed_at_seeded_points_ends_as_the_uninterrupted_run() {
    let seed = std::env::var("NANOCHAT_FAULT_SEED").map(|s| s.parse().expect("NANOCHAT_FAULT_SEED: an integer"));
    let seed = seed.unwrap_or(DEFAULT_FAULT_SEED);
    eprintln!("fault sweep: seed {seed} (NANOCHAT_FAULT_SEED sets it)");
    let reference = reference();
    let clock = Instant::now();
    // One target stage in each of KILLS consecutive groups of the stages before the report (whose
    // end is the run's end), then a delay into it scaled to its length in the reference run and cut
    // short when it ends (the stages after it keep the run going).
    let mut rng = Rng(seed);
    let candidates = STAGES.len() - 1;
    let targets: Vec<(usize, f64)> = (0..KILLS)
        .map(|k| {
            let (lo, hi) = (k * candidates / KILLS, (k + 1) * candidates / KILLS);
            let stage = lo + (rng.next() % (hi - lo) as u64) as usize;
            (stage, rng.unit() * 0.8 * reference.stage_seconds[STAGES[stage]])
        })
        .collect();

    let base = common::temp_dir("faults-sweep");
    for (target, delay) in targets {
        let mut run = Running::start(tiny().speedrun(&base, &[]));
        let stage = run.wait_for_stage(target);
        run.wait_into(stage, Duration::from_secs_f64(delay));
        let (status, said) = run.kill();
        let killed_in = said.lines().rev().find_map(running_stage).unwrap_or("?");
        eprintln!("fault sweep: killed at most {delay:.2} s after `{stage}` started, during `{killed_in}`");
        assert_eq!(status.signal(), Some(libc::SIGKILL), "the run ended before the kill:\n{said}");
        print_resumptions(&said);
        assert_no_torn_files(&base, &reference.fingerprint, &format!("the kill during {killed_in}"));
    }
    print_resumptions(&run_ok(tiny().speedrun(&base, &[])));
    assert_eq!(Fingerprint::of(&base), reference.fingerprint);
    eprintln!("fault sweep: {KILLS} kills and the final run took {:.0} s", clock.elapsed().as_secs_f64());
}

#[test]
fn a_truncated_checkpoint_and_a_flipped_shard_byte_are_redone_by_the_stages_that_made_them() {
    let reference = reference();
    let base = &reference.base;
    let model = base.join("base_d1/model_000008.safetensors");
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(&model, &bytes[..bytes.len() / 2]).unwrap();
    let shard = base.join(SHARDS).join("shard_00002.parquet");
    let mut bytes = std::fs::read(&shard).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&shard, &bytes).unwrap();

    let said = run_ok(tiny().speedrun(base, &[]));
    let redone = |stage: &str, file: &Path| format!("{stage}: running (output changed or missing: {})", file.display());
    let (repair, retrain) = (redone("data-wait", &shard), redone("base-train", &model));
    // The shard is fetched again before base-train (which reads it) runs, and everything after
    // base-train reads the checkpoint it writes anew.
    assert!(said.find(&repair).is_some_and(|at| said.find(&retrain).is_some_and(|later| at < later)), "{said}");
    assert!(said.contains("shard_00002.parquet: existing file does not match its checksum"), "{said}");
    assert_eq!(Fingerprint::of(base), reference.fingerprint);
}

/// `command` with a file size limit of `bytes` (RLIMIT_FSIZE) and SIGXFSZ ignored, so a write past
/// it fails with EFBIG as one on a full disk fails with ENOSPC.
fn with_file_size_limit(mut command: Command, bytes: u64) -> Command {
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit { rlim_cur: bytes, rlim_max: bytes };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
}

fn run_failing(mut command: Command) -> String {
    let out: Output = command.output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    text(&out)
}

/// "out of space writing <size> to <path>" as the error says it, for any size.
fn says_out_of_space(said: &str, path: &Path) -> bool {
    said.lines().any(|l| l.contains("out of space writing ") && l.contains(&format!(" to {}: ", path.display())))
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).len()
}

/// A tmpfs mounted for the guard's life.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// None when this process may not mount one.
    fn mount(dir: &Path, bytes: u64) -> Option<Self> {
        let out =
            Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"]).arg(dir).output();
        match out {
            Ok(out) if out.status.success() => Some(Tmpfs(dir.to_path_buf())),
            Ok(out) => {
                eprintln!("mount -t tmpfs {}: {}", dir.display(), text(&out));
                None
            }
            Err(e) => {
                eprintln!("mount: {e}");
                None
            }
        }
    }

    fn resize(&self, bytes: u64) {
        let out = Command::new("mount").args(["-o", &format!("remount,size={bytes}")]).arg(&self.0).output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn writes_that_run_out_of_space_say_what_they_needed_keep_finished_files_and_a_rerun_continues() {
    let tiny = tiny();
    let base = common::temp_dir("faults-full-disk");
    let shards = base.join(SHARDS);
    let checkpoints = base.join("base_d1");

    // A download: the limit lies between the sizes of the two shards the `data` stage fetches.
    let mut first: Vec<(u64, String)> = (0..2)
        .map(|i| {
            let name = nanochat::download::shard_file_name(i);
            (file_size(&tiny.mirror_dir.join(&name)), name)
        })
        .collect();
    first.sort();
    let [(small, small_name), (large, large_name)] = [first[0].clone(), first[1].clone()];
    assert!(small < large, "{first:?}");
    let limit = (small + large) / 2;
    let said = run_failing(with_file_size_limit(tiny.speedrun(&base, &[]), limit));
    let partial = shards.join(format!("{large_name}.partial"));
    let needed = format!("out of space writing {} to {}: ", human_bytes(large), partial.display());
    assert!(said.contains(&needed) && said.contains("ulimit -f unlimited"), "{said}");
    assert!(said.contains("stage `data` failed"), "{said}");
    assert_eq!(
        sha256_file(&shards.join(&small_name)).unwrap(),
        sha256_file(&tiny.mirror_dir.join(&small_name)).unwrap()
    );
    assert!(!shards.join(&large_name).exists());
    assert_eq!(file_size(&partial), limit, "the partial download is kept for the rerun to resume");

    // With room for the shards but not for the first checkpoint's optimizer state (larger than its model).
    let reference = reference();
    let model_bytes = file_size(&reference.base.join("base_d1/model_000004.safetensors"));
    let optim_bytes = file_size(&reference.base.join("base_d1/optim_000004_rank0.safetensors"));
    assert!(model_bytes < optim_bytes);
    let said = run_failing(with_file_size_limit(tiny.speedrun(&base, &[]), (model_bytes + optim_bytes) / 2));
    assert!(said.contains("data: running (the last attempt failed (exit code 1))"), "{said}");
    assert!(says_out_of_space(&said, &checkpoints.join("optim_000004_rank0.safetensors")), "{said}");
    assert!(said.contains("stage `base-train` failed"), "{said}");
    assert!(!checkpoints.join("meta_000004.json").exists(), "an incomplete checkpoint is never complete");
    let hidden: Vec<_> = std::fs::read_dir(&checkpoints)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(hidden.is_empty(), "temporary files left: {hidden:?}");
    // With room: base-train resumes (from step 0: it never finished a checkpoint).
    let said = run_ok(tiny.speedrun(&base, &["--only", "base-train"]));
    assert!(said.contains("base-train: running (the last attempt failed (exit code 1); resuming)"), "{said}");

    // The report: an earlier report.md stays when the new one does not fit.
    run_ok(tiny.speedrun(&base, &["--only", "report"]));
    let report = base.join("report/report.md");
    let earlier = std::fs::read(&report).unwrap();
    let said = run_failing(with_file_size_limit(tiny.speedrun(&base, &["--only", "report"]), earlier.len() as u64 / 2));
    assert!(says_out_of_space(&said, &report) && said.contains("stage `report` failed"), "{said}");
    assert_eq!(std::fs::read(&report).unwrap(), earlier);
    let said = run_ok(tiny.speedrun(&base, &["--only", "report"]));
    assert!(said.contains(&format!("report written to {}", report.display())), "{said}");

    // A full disk: a tmpfs holding the first checkpoint of base-train but not the second.
    let page = 4096;
    let pages = |bytes: u64| bytes.div_ceil(page);
    let size = (pages(model_bytes) + pages(optim_bytes) + 16 + pages(model_bytes) / 2) * page;
    match Tmpfs::mount(&checkpoints, size) {
        None => eprintln!(
            "\n########################################################################\n\
             ## WARNING: cannot mount a tmpfs here: the full-disk (ENOSPC) variant  ##\n\
             ## was NOT tested; the RLIMIT_FSIZE variants above were.              ##\n\
             ########################################################################\n"
        ),
        Some(tmpfs) => {
            let said = run_failing(tiny.speedrun(&base, &["--only", "base-train"]));
            let model = checkpoints.join("model_000008.safetensors");
            assert!(says_out_of_space(&said, &model) && said.contains("the disk is full; free at least"), "{said}");
            assert!(said.contains(&format!(" on {} and rerun", checkpoints.display())), "{said}");
            let step4: BTreeMap<_, _> = reference
                .fingerprint
                .files_under("base_d1/")
                .into_iter()
                .filter(|(p, _)| p.contains("000004"))
                .collect();
            assert_eq!(Fingerprint::of(&base).files_under("base_d1/"), step4, "the first checkpoint is intact");
            tmpfs.resize(64 << 20);
            let said = run_ok(tiny.speedrun(&base, &["--only", "base-train"]));
            assert!(said.contains("resuming from step 4"), "{said}");
            assert_eq!(Fingerprint::of(&base).files_under("base_d1/"), reference.fingerprint.files_under("base_d1/"));
        }
    }
    let ours = Fingerprint::of(&base);
    for prefix in ["base_d1/", "tok/", SHARDS] {
        assert_eq!(ours.files_under(prefix), reference.fingerprint.files_under(prefix), "{prefix}");
    }
}
