//! The speedrun orchestrator's skip / redo / resume / failure behaviour, driven by stand-in stages
//! whose work is a function of their input files (so content changes propagate like real stages).
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use nanochat::speedrun::{Decision, Orchestrator, Selection, SpeedrunError, StageRunner, StageSpec};
use serde_json::json;

/// Each stage concatenates its inputs (upper-cased) into its single output; failing stages exit 3.
struct FakeRunner {
    calls: RefCell<Vec<String>>,
    args: RefCell<Vec<Vec<String>>>,
    failing: RefCell<HashMap<String, i32>>,
    /// A stage during which the speedrun "dies": the runner returns an error instead of an exit code.
    killed_in: RefCell<Option<String>>,
}

impl FakeRunner {
    fn new() -> Self {
        FakeRunner {
            calls: RefCell::new(Vec::new()),
            args: RefCell::new(Vec::new()),
            failing: RefCell::new(HashMap::new()),
            killed_in: RefCell::new(None),
        }
    }
    fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut self.calls.borrow_mut())
    }
}

impl StageRunner for FakeRunner {
    fn run(&self, stage: &StageSpec, log: &Path) -> std::io::Result<i32> {
        self.calls.borrow_mut().push(stage.name.clone());
        self.args.borrow_mut().push(stage.args.clone());
        std::fs::create_dir_all(log.parent().unwrap())?;
        std::fs::write(log, format!("running {}\n", stage.name))?;
        if self.killed_in.borrow().as_deref() == Some(stage.name.as_str()) {
            return Err(std::io::Error::other("killed"));
        }
        if let Some(code) = self.failing.borrow().get(&stage.name) {
            return Ok(*code);
        }
        let mut text = String::new();
        for input in &stage.inputs {
            text += &std::fs::read_to_string(input)?.to_uppercase();
        }
        std::fs::create_dir_all(stage.outputs[0].parent().unwrap())?;
        std::fs::write(&stage.outputs[0], text + &stage.name)?;
        Ok(0)
    }
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("source.txt"), "raw text").unwrap();
        Fixture { dir }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    /// source.txt -> a.out -> b.out -> c.out, plus an always-run "report".
    fn stages(&self, b_setting: i64) -> Vec<StageSpec> {
        let spec = |name: &str, input: Option<&str>, output: &str, config| StageSpec {
            name: name.into(),
            args: vec![name.into()],
            inputs: input.map(|i| vec![self.path(i)]).unwrap_or_default(),
            outputs: vec![self.path(output)],
            config,
            always_run: false,
            resume_args: vec![],
        };
        let mut report = spec("report", None, "report.md", json!({}));
        report.always_run = true;
        vec![
            spec("a", Some("source.txt"), "a.out", json!({"x": 1})),
            spec("b", Some("a.out"), "b.out", json!({"setting": b_setting})),
            spec("c", Some("b.out"), "c/c.out", json!({})),
            report,
        ]
    }
    fn orchestrator<'a>(&self, runner: &'a FakeRunner) -> Orchestrator<'a> {
        Orchestrator::new(self.path("records"), self.path("logs"), runner)
    }
}

fn ran(outcomes: &[nanochat::speedrun::StageOutcome]) -> Vec<&str> {
    outcomes.iter().filter(|o| matches!(o.decision, Decision::Run { .. })).map(|o| o.stage.as_str()).collect()
}

#[test]
fn second_run_skips_verified_stages_but_not_always_run_ones() {
    let fx = Fixture::new();
    let runner = FakeRunner::new();
    let out = fx.orchestrator(&runner).run(&fx.stages(1), &Selection::default()).unwrap();
    assert_eq!(ran(&out), ["a", "b", "c", "report"]);
    assert_eq!(std::fs::read_to_string(fx.path("c/c.out")).unwrap(), "RAW TEXTABc");
    runner.take_calls();
    let out = fx.orchestrator(&runner).run(&fx.stages(1), &Selection::default()).unwrap();
    assert_eq!(ran(&out), ["report"]);
    assert_eq!(runner.take_calls(), ["report"]);
    let record = nanochat::speedrun::StageRecord::load(&fx.path("records"), "b").unwrap();
    assert_eq!(record.exit_code, 0);
    assert_eq!(record.inputs.len(), 1);
    assert_eq!(record.outputs.values().next().unwrap().len(), 64, "sha256 hex of the output");
    assert!(record.wall_time_s >= 0.0);
}

#[test]
fn changed_input_redoes_the_stage_and_everything_whose_inputs_changed() {
    let fx = Fixture::new();
    let runner = FakeRunner::new();
    fx.orchestrator(&runner).run(&fx.stages(1), &Selection::default()).unwrap();
    std::fs::write(fx.path("source.txt"), "new text").unwrap();
    let out = fx.orchestrator(&runner).run(&fx.stages(1), &Selection::default()).unwrap();
    assert_eq!(ran(&out), ["a", "b", "c", "report"]);
    assert!(matches!(&out[0].decision, Decision::Run { reason, .. } if reason.contains("input changed")), "{out:?}");
}

#[test]
fn unchanged_output_of_a_redone_stage_does_not_cascade() {
    let fx = Fixture::new();
    let runner = FakeRunner::new();
    fx.orchestrator(&runner).run(&fx.stages(1), &Selection::default()).unwrap();
    // b's configuration changes, but b writes the same bytes: c's input is unchanged, so c is skipped.
    let out = fx.orchestrator(&runner).run(&fx.stages(2), &Selection::default()).unwrap();
    assert_eq!(ran(&out), ["b", "report"]);
    assert!(matches!(&out[1].decision, Decision::Run { reason, .. } if reason.contains("configuration changed")));
}

#[test]
fn missing_or_edited_output_is_redone() {
    let fx = Fixture::new();
    let runner = FakeRunner::new();
    fx.orchestrator(&runner).run(&fx.stages(1), &Selection::default()).unwrap();
    std::fs::remove_file(fx.path("c/c.out")).unwrap();
    let out = fx.orchestrator(&runner).run(&fx.stages(1), &Selection::default()).unwrap();
    assert_eq!(ran(&out), ["c", "report"]);
    std::fs::write(fx.path("a.out"), "tampered").unwrap();
    let out = fx.orchestrator(&runner).run(&fx.stages(1), &Selection::default()).unwrap();
    assert_eq!(ran(&out), ["a", "report"], "a rewrites its output; b's input is then the same as recorded");
}

#[test]
fn failure_stops_the_run_keeps_finished_work_and_a_rerun_resumes() {
    let fx = Fixture::new();
    let runner = FakeRunner::new();
    runner.failing.borrow_mut().insert("b".into(), 3);
    let err = fx.orchestrator(&runner).run(&fx.stages(1), &Selection::default()).unwrap_err();
    match &err {
        SpeedrunError::StageFailed { stage, code, log } => {
            assert_eq!((stage.as_str(), *code), ("b", 3));
            assert_eq!(log, &fx.path("logs/b.log"));
            assert!(log.exists());
        }
        other => panic!("unexpected error {other}"),
    }
    assert!(err.to_string().contains("stage `b` failed with exit code 3"));
    assert_eq!(runner.take_calls(), ["a", "b"], "c and report never started");
    assert!(fx.path("a.out").exists(), "finished work is kept");
    let record = nanochat::speedrun::StageRecord::load(&fx.path("records"), "b").unwrap();
    assert_eq!(record.exit_code, 3);

    runner.failing.borrow_mut().clear();
    let out = fx.orchestrator(&runner).run(&fx.stages(1), &Selection::default()).unwrap();
    assert_eq!(ran(&out), ["b", "c", "report"]);
    assert!(matches!(&out[1].decision, Decision::Run { reason, .. } if reason.contains("last attempt failed")));
}

#[test]
fn from_only_and_force_select_stages() {
    let fx = Fixture::new();
    let runner = FakeRunner::new();
    let sel = |from: Option<&str>, only: Option<&str>, force| Selection {
        from: from.map(Into::into),
        only: only.map(Into::into),
        force,
    };
    // --only on a fresh base dir runs just that stage (its input exists).
    let out = fx.orchestrator(&runner).run(&fx.stages(1), &sel(None, Some("a"), false)).unwrap();
    assert_eq!(ran(&out), ["a"]);
    // --from c: a and b are neither checked nor run; c fails because b.out is missing.
    let err = fx.orchestrator(&runner).run(&fx.stages(1), &sel(Some("c"), None, false)).unwrap_err();
    assert!(matches!(err, SpeedrunError::Io { ref stage, .. } if stage == "c"), "{err}");
    fx.orchestrator(&runner).run(&fx.stages(1), &Selection::default()).unwrap();
    runner.take_calls();
    let out = fx.orchestrator(&runner).run(&fx.stages(1), &sel(Some("b"), None, true)).unwrap();
    assert_eq!(ran(&out), ["b", "c", "report"]);
    let out = fx.orchestrator(&runner).run(&fx.stages(1), &sel(None, Some("a"), true)).unwrap();
    assert_eq!(ran(&out), ["a"]);
    let err = fx.orchestrator(&runner).run(&fx.stages(1), &sel(None, Some("tok-train"), false)).unwrap_err();
    assert!(err.to_string().contains("--only tok-train") && err.to_string().contains("a, b, c, report"), "{err}");
}

#[test]
fn a_failed_stage_with_unchanged_inputs_resumes_with_its_resume_args() {
    let fx = Fixture::new();
    let runner = FakeRunner::new();
    let mut stages = fx.stages(1);
    stages[1].resume_args = vec!["--resume".into()];
    runner.failing.borrow_mut().insert("b".into(), 1);
    assert!(fx.orchestrator(&runner).run(&stages, &Selection::default()).is_err());
    runner.failing.borrow_mut().clear();
    let out = fx.orchestrator(&runner).run(&stages, &Selection::default()).unwrap();
    assert!(
        matches!(&out[1].decision, Decision::Run { resume: true, reason } if reason.ends_with("resuming")),
        "{out:?}"
    );
    assert!(runner.args.borrow().contains(&vec!["b".to_string(), "--resume".to_string()]));
    // A failed stage whose inputs changed starts over instead.
    runner.failing.borrow_mut().insert("b".into(), 1);
    assert!(fx.orchestrator(&runner).run(&stages, &Selection { force: true, ..Default::default() }).is_err());
    runner.failing.borrow_mut().clear();
    std::fs::write(fx.path("source.txt"), "other text").unwrap();
    let out = fx.orchestrator(&runner).run(&stages, &Selection::default()).unwrap();
    assert!(matches!(&out[1].decision, Decision::Run { resume: false, .. }), "{out:?}");
}

#[test]
fn a_stage_the_speedrun_died_in_is_resumed_on_the_next_run() {
    let fx = Fixture::new();
    let runner = FakeRunner::new();
    let mut stages = fx.stages(1);
    stages[1].resume_args = vec!["--resume".into()];
    *runner.killed_in.borrow_mut() = Some("b".into());
    assert!(fx.orchestrator(&runner).run(&stages, &Selection::default()).is_err());
    let record = nanochat::speedrun::StageRecord::load(&fx.path("records"), "b").unwrap();
    assert_eq!(record.exit_code, nanochat::speedrun::record::RUNNING, "the record saved as b started is left");
    *runner.killed_in.borrow_mut() = None;
    let out = fx.orchestrator(&runner).run(&stages, &Selection::default()).unwrap();
    assert_eq!(ran(&out), ["b", "c", "report"]);
    assert!(
        matches!(&out[1].decision, Decision::Run { resume: true, reason } if reason.contains("interrupted")),
        "{out:?}"
    );
    assert!(runner.args.borrow().contains(&vec!["b".to_string(), "--resume".to_string()]));
    assert_eq!(nanochat::speedrun::StageRecord::load(&fx.path("records"), "b").unwrap().exit_code, 0);
}
