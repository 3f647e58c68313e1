//! The appliance image on the real Docker engine: the smoke speedrun inside the container through
//! `nanochat container run` and through plain `docker run`, Ctrl-C, exit codes, and the launcher's
//! errors. These need the image, so they are `#[ignore]`d in a plain `cargo test`; `make test` builds
//! the image and runs them with NANOCHAT_TEST_IMAGE set (or says loudly that it cannot). The one check
//! that needs no engine (an unreachable socket) runs always.
#[path = "support/smoke_report.rs"]
mod smoke_report;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const CACHE: &str = "/root/.cache/nanochat";

fn image() -> String {
    std::env::var("NANOCHAT_TEST_IMAGE").expect(
        "NANOCHAT_TEST_IMAGE must name the image under test: run these through `make test` or `make image-test`",
    )
}

/// The host's CA bundle: this machine reaches PyPI through an HTTPS proxy with its own CA, which the
/// image's Debian bundle does not have (the smoke corpus downloads its sdists from PyPI).
const HOST_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

fn nanochat(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_nanochat"));
    command
        .args(args)
        .env_remove("NANOCHAT_IMAGE")
        .env_remove("NANOCHAT_PRESET")
        .env("NANOCHAT_CA_CERTS", HOST_CA_BUNDLE);
    command
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker").args(args).output().expect("the docker CLI runs")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A named volume for one test, removed with every container that used it.
struct TestVolume(String);

impl TestVolume {
    fn new(tag: &str) -> Self {
        TestVolume(format!("nanochat-test-{tag}-{}", std::process::id()))
    }
    /// A file of the volume, read through a throwaway container.
    fn read(&self, path: &str) -> Output {
        let mount = format!("{}:{CACHE}", self.0);
        docker(&["run", "--rm", "-v", &mount, "--entrypoint", "cat", &image(), &format!("{CACHE}/{path}")])
    }
}

impl Drop for TestVolume {
    fn drop(&mut self) {
        let filter = format!("volume={}", self.0);
        let ids = docker(&["ps", "-aq", "--filter", &filter]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            docker(&["rm", "-f", id]);
        }
        docker(&["volume", "rm", "-f", &self.0]);
    }
}

fn containers_started_by_the_launcher() -> Vec<String> {
    let filter = format!("label={}", nanochat::container::LAUNCHER_LABEL);
    let out = docker(&["ps", "-aq", "--filter", &filter]);
    String::from_utf8_lossy(&out.stdout).split_whitespace().map(String::from).collect()
}

/// The acceptance run: the smoke preset end to end inside the image on CPU, started by the launcher
/// with the cache volume; report.md comes out. Then the documented `docker run` form on the same
/// volume finds every stage done and verified.
#[test]
#[ignore = "needs the image: make test / make image-test"]
fn smoke_speedrun_runs_in_the_image_through_the_launcher_and_docker_run() {
    let volume = TestVolume::new("smoke");
    let out_dir = tempfile::tempdir().unwrap();
    let report_out = out_dir.path().join("report.md");
    let image = image();
    let run = nanochat(&[
        "container",
        "run",
        "--image",
        &image,
        "--gpus",
        "none",
        "--volume",
        &volume.0,
        "--report-out",
        report_out.to_str().unwrap(),
        // Docker's seccomp profile forbids the sandbox's user namespaces: the test opts in to HumanEval
        // without them (the container is the boundary), so that every summary cell is filled.
        "--env",
        "NANOCHAT_ALLOW_UNSANDBOXED=1",
        "speedrun",
        "--preset",
        "smoke",
    ])
    .output()
    .unwrap();
    let said = text(&run);
    assert!(run.status.success(), "{said}");
    // The container's output was streamed here, stage by stage.
    for stage in ["doctor", "tok-train", "base-train", "base-loss", "report"] {
        assert!(said.contains(stage), "stage {stage} not in the streamed output:\n{said}");
    }
    let report = std::fs::read_to_string(&report_out).expect("report.md copied out of the container");
    smoke_report::assert_is_smoke_report(&report, |name| {
        let plot = volume.read(&format!("report/{name}"));
        plot.status.success().then_some(plot.stdout)
    });
    assert!(report.contains(&image) || report.contains("sha256:"), "report names the image:\n{report}");
    let in_volume = volume.read("report/report.md");
    assert!(in_volume.status.success(), "{}", text(&in_volume));
    assert_eq!(String::from_utf8_lossy(&in_volume.stdout), report, "the copy is the volume's report");
    assert!(containers_started_by_the_launcher().is_empty(), "the launcher removes its container");

    let mount = format!("{}:{CACHE}", volume.0);
    let ca = format!("{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro");
    let again = docker(&["run", "--rm", "-v", &mount, "-v", &ca, &image, "speedrun", "--preset", "smoke"]);
    let said = text(&again);
    assert!(again.status.success(), "{said}");
    for stage in ["tok-train", "base-train", "base-loss"] {
        assert!(
            said.lines().any(|l| l.contains(stage) && l.contains("skip")),
            "{stage} should be skipped as verified on the same volume:\n{said}"
        );
    }
}

#[test]
#[ignore = "needs the image: make test / make image-test"]
fn the_launcher_exits_with_the_containers_exit_code() {
    let volume = TestVolume::new("exit");
    let args = ["config", "show", "--set", "no_such.key=1"];
    let launched = nanochat(&["container", "run", "--image", &image(), "--gpus", "none", "--volume", &volume.0])
        .args(args)
        .output()
        .unwrap();
    let mount = format!("{}:{CACHE}", volume.0);
    let direct = docker(&[&["run", "--rm", "-v", &mount, &image()][..], &args[..]].concat());
    assert!(!direct.status.success());
    assert_eq!(launched.status.code(), direct.status.code(), "{}", text(&launched));
    assert!(text(&launched).contains("unknown configuration key `no_such.key`"), "{}", text(&launched));
    assert!(containers_started_by_the_launcher().is_empty());
}

/// Ctrl-C on the launcher stops the container (SIGTERM through tini to the stage processes) and the
/// launcher exits with 130, leaving no container behind.
#[test]
#[ignore = "needs the image: make test / make image-test"]
fn ctrl_c_stops_the_container_cleanly() {
    let volume = TestVolume::new("sigint");
    let mut child = nanochat(&["container", "run", "--image", &image(), "--gpus", "none", "--volume", &volume.0])
        .args(["--report-out", "-", "--stop-timeout", "20", "speedrun", "--preset", "smoke"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the speedrun inside is under way (it logs its first stage on stderr), then interrupt.
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines().map_while(Result::ok);
    let seen: Vec<String> = lines.by_ref().take_while(|line| !line.contains("doctor")).collect();
    let interrupted_at = Instant::now();
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let rest: Vec<String> = lines.collect();
    let status = child.wait().unwrap();
    let said = format!("{}\n{}", seen.join("\n"), rest.join("\n"));
    assert_eq!(status.code(), Some(130), "{said}");
    assert!(said.contains("stopping the container"), "{said}");
    assert!(interrupted_at.elapsed() < Duration::from_secs(60), "stop took {:?}", interrupted_at.elapsed());
    assert!(containers_started_by_the_launcher().is_empty(), "container left behind after Ctrl-C");
}

#[test]
#[ignore = "needs the image: make test / make image-test"]
fn launcher_errors_say_what_to_do() {
    let missing = nanochat(&["container", "run", "--image", "nanochat:no-such-tag", "doctor"]).output().unwrap();
    assert!(!missing.status.success());
    assert!(
        text(&missing).contains("image nanochat:no-such-tag is not in the Docker engine: build it with `make image`")
    );

    // GPUs: this engine either has the NVIDIA runtime (the doctor then runs) or must say how to get it.
    let runtimes = docker(&["info", "--format", "{{json .Runtimes}}"]);
    let has_nvidia = String::from_utf8_lossy(&runtimes.stdout).contains("nvidia");
    let volume = TestVolume::new("gpu");
    let gpu = nanochat(&["container", "run", "--image", &image(), "--gpus", "all", "--volume", &volume.0])
        .args(["--report-out", "-", "doctor", "--preset", "smoke"])
        .output()
        .unwrap();
    if has_nvidia {
        assert!(gpu.status.success(), "{}", text(&gpu));
    } else {
        assert!(!gpu.status.success());
        assert!(text(&gpu).contains("install the NVIDIA Container Toolkit"), "{}", text(&gpu));
        assert!(text(&gpu).contains("--gpus none"), "{}", text(&gpu));
    }
    assert!(containers_started_by_the_launcher().is_empty());

    // A GPU preset in the image started without `--gpus` names the missing flag instead of running on the CPU.
    let bare = docker(&["run", "--rm", &image(), "--preset", "d20", "doctor", "--allow-mismatch"]);
    assert_eq!(bare.status.code(), Some(1), "{}", text(&bare));
    assert!(text(&bare).contains("it was started without `--gpus`"), "{}", text(&bare));
    assert!(text(&bare).contains("docker run --gpus all --shm-size 16g"), "{}", text(&bare));
}

/// Run options given before `container` would configure the launcher, not the stage: refused before
/// anything starts. Needs no Docker.
#[test]
fn run_options_before_the_container_command_are_refused() {
    let out = nanochat(&["--set", "base_train.depth=4", "container", "run", "--gpus", "none", "speedrun"])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let said = text(&out);
    assert!(said.contains("--set base_train.depth=4 would apply to this launcher"), "{said}");
    assert!(!said.contains("cannot reach the Docker engine"), "refused before contacting the engine: {said}");
    let out = nanochat(&["container", "run", "--gpus", "none", "speedrun", "--preset", "smoke"])
        .env("NANOCHAT_PRESET", "smoke")
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    assert!(text(&out).contains("--preset smoke (or NANOCHAT_PRESET) would apply"), "{}", text(&out));
}

#[test]
fn a_missing_ca_bundle_is_named() {
    let out = nanochat(&["container", "run", "--gpus", "none", "--ca-certs", "/nonexistent/ca.crt", "doctor"])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("--ca-certs /nonexistent/ca.crt"), "{}", text(&out));
}

/// No engine at all: one clear line naming the socket and what to check. Needs no Docker.
#[test]
fn an_unreachable_engine_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("docker.sock");
    let out = nanochat(&["container", "run", "--gpus", "none", "doctor"])
        .env("DOCKER_HOST", format!("unix://{}", socket.display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let said = text(&out);
    assert!(said.contains(&format!("cannot reach the Docker engine at unix://{}", socket.display())), "{said}");
    assert!(said.contains("Is Docker installed and running"), "{said}");
    assert!(!Path::new(&socket).exists());
}
