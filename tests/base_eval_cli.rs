//! `nanochat base-eval` end to end: on the golden d2 weights with `--bundle` (the reference's
//! numbers land in the CSV, the report section and the summary table's CORE cell), `--step` and
//! `--source-dir`; and with the smoke preset, the stand-in bundle fetched through the real download
//! path on 127.0.0.1, verified, unpacked into eval_bundle/ once, and kept apart from the real one.
#[path = "support/chat_fixtures.rs"]
mod chat_fixtures;

use chat_fixtures::{chat_base, nanochat, root, stdout};
use serde_json::Value;

fn golden() -> Value {
    serde_json::from_str(&std::fs::read_to_string(root().join("tests/golden/core/core.json")).unwrap()).unwrap()
}

/// The chat fixtures' base dir with the golden CORE weights as base_d2/ step 0.
fn core_base() -> chat_fixtures::ChatBase {
    let base = chat_base();
    let dir = base.paths.checkpoints("base", 2);
    for f in ["model_000000.pt", "meta_000000.json"] {
        std::fs::copy(root().join("tests/golden/core/model_d2").join(f), dir.join(f)).unwrap();
    }
    base
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bundle_flag_writes_the_reference_numbers_to_the_csv_report_and_summary() {
    let base = core_base();
    let bundle = root().join("tests/golden/core/bundles/golden_a");
    let args = ["--preset", "smoke", "base-eval", "--bundle", bundle.to_str().unwrap(), "--max-per-task", "5"];
    stdout(&nanochat(base.dir.path(), &args, None));
    let run = &golden()["runs"][1];
    assert_eq!(run["max_per_task"], 5);
    let csv = std::fs::read_to_string(base.paths.base_eval().join("base_model_000000.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], format!("{:<35}, {:<10}, {:<10}", "Task", "Accuracy", "Centered"));
    let tasks = run["tasks"].as_array().unwrap();
    assert_eq!(lines.len(), tasks.len() + 2);
    for (line, task) in lines[1..].iter().zip(tasks) {
        let (acc, centered) = (task["accuracy"].as_f64().unwrap(), task["centered"].as_f64().unwrap());
        assert_eq!(*line, format!("{:<35}, {acc:<10.6}, {centered:<10.6}", task["label"].as_str().unwrap()));
    }
    let core = run["core_metric"].as_f64().unwrap();
    assert_eq!(lines[lines.len() - 1], format!("{:<35}, {:<10}, {core:<10.6}", "CORE", ""));

    let section: Value =
        serde_json::from_str(&std::fs::read_to_string(base.paths.report().join("base-model-evaluation.json")).unwrap())
            .unwrap();
    let entries = section["entries"].as_array().unwrap();
    assert_eq!(entries[0]["key"], "Model");
    assert_eq!(entries[0]["value"], "base_model (step 0)");
    assert_eq!(entries[1]["key"], "CORE metric");
    assert!((entries[1]["value"].as_f64().unwrap() - core).abs() < 1e-6);
    assert_eq!(entries.len(), 2 + tasks.len(), "then each task's centered accuracy");
    assert_eq!(entries[2]["key"], tasks[0]["label"]);

    stdout(&nanochat(base.dir.path(), &["--preset", "smoke", "report", "generate"], None));
    let report = std::fs::read_to_string(base.paths.report().join("report.md")).unwrap();
    assert!(report.contains(&format!("| CORE | {core:.4} | - | - | - |")), "{report}");
}

#[test]
fn step_and_source_dir_choose_the_checkpoint_and_bad_bundles_say_what_is_wrong() {
    let base = core_base();
    let bundle = root().join("tests/golden/core/bundles/golden_b");
    let bundle = bundle.to_str().unwrap();
    let missing =
        nanochat(base.dir.path(), &["--preset", "smoke", "base-eval", "--bundle", bundle, "--step", "7"], None);
    assert!(!missing.status.success());
    assert!(stderr(&missing).contains("meta_000007.json"), "{}", stderr(&missing));

    let elsewhere = tempfile::tempdir().unwrap();
    for f in ["model_000000.pt", "meta_000000.json"] {
        std::fs::copy(root().join("tests/golden/core/model_d2").join(f), elsewhere.path().join(f)).unwrap();
    }
    let args =
        ["--preset", "smoke", "base-eval", "--bundle", bundle, "--source-dir", elsewhere.path().to_str().unwrap()];
    stdout(&nanochat(base.dir.path(), &args, None));
    let csv = std::fs::read_to_string(base.paths.base_eval().join("base_model_000000.csv")).unwrap();
    let core = golden()["runs"][2]["core_metric"].as_f64().unwrap();
    assert!(csv.ends_with(&format!("{:<35}, {:<10}, {core:<10.6}\n", "CORE", "")), "{csv}");

    let broken = tempfile::tempdir().unwrap();
    std::fs::write(
        broken.path().join("core.yaml"),
        "icl_tasks:\n- label: x\n  dataset_uri: x.jsonl\n  num_fewshot: [0]\n  icl_task_type: multiple_choice\n",
    )
    .unwrap();
    std::fs::write(broken.path().join("eval_meta_data.csv"), "Eval Task,Random baseline\ny,25\n").unwrap();
    let out = nanochat(
        base.dir.path(),
        &["--preset", "smoke", "base-eval", "--bundle", broken.path().to_str().unwrap()],
        None,
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("x has no row in eval_meta_data.csv"), "{}", stderr(&out));
}

#[test]
fn the_smoke_stand_in_comes_through_the_download_path_once_and_never_mixes_with_the_real_bundle() {
    let base = core_base();
    let out = nanochat(base.dir.path(), &["--preset", "smoke", "base-eval"], None);
    stdout(&out);
    let bundle = base.paths.eval_bundle();
    assert!(bundle.join("core.yaml").is_file() && bundle.join(".smoke-stand-in").is_file());
    let zip = base.paths.data().join("eval-bundle/eval_bundle.zip");
    assert!(zip.is_file(), "downloaded into data/eval-bundle/");
    assert!(stderr(&out).contains("127.0.0.1"), "{}", stderr(&out));
    let csv = std::fs::read_to_string(base.paths.base_eval().join("base_model_000000.csv")).unwrap();
    for label in
        ["smoke_facts_fewshot", "smoke_facts_zeroshot", "smoke_pronouns", "smoke_sequences", "smoke_completions"]
    {
        assert!(csv.contains(label), "{csv}");
    }
    assert!(csv.lines().last().unwrap().starts_with("CORE"));

    // A second run uses what is there.
    let again = nanochat(base.dir.path(), &["--preset", "smoke", "base-eval"], None);
    stdout(&again);
    assert!(!stderr(&again).contains("fetching"), "{}", stderr(&again));

    // A run that wants the real bundle refuses the stand-in.
    let real = nanochat(base.dir.path(), &["--preset", "d20", "base-eval"], None);
    assert!(!real.status.success());
    let err = stderr(&real);
    assert!(err.contains("holds the CORE smoke stand-in") && err.contains("--base-dir"), "{err}");
}

#[test]
fn two_processes_split_the_examples_and_agree_with_one() {
    let bundle = root().join("tests/golden/core/bundles/golden_a");
    let args = ["--preset", "smoke", "base-eval", "--bundle", bundle.to_str().unwrap()];
    let one = core_base();
    stdout(&nanochat(one.dir.path(), &args, None));
    let two = core_base();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    stdout(&nanochat(two.dir.path(), &[&args[..], &["--nproc-per-node", "2", "--master-port", &port]].concat(), None));
    let csv = |base: &chat_fixtures::ChatBase| {
        std::fs::read_to_string(base.paths.base_eval().join("base_model_000000.csv")).unwrap()
    };
    assert_eq!(csv(&one), csv(&two));
    let core = golden()["runs"][0]["core_metric"].as_f64().unwrap();
    assert!(csv(&two).ends_with(&format!("{:<35}, {:<10}, {core:<10.6}\n", "CORE", "")), "{}", csv(&two));
}

#[test]
fn a_base_dir_the_reference_wrote_is_evaluated_as_is() {
    // The reference's layout: tokenizer/tokenizer.pkl and base_checkpoints/d2/model_000000.pt.
    let base = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(base.path().join("tokenizer")).unwrap();
    std::fs::copy(root().join("tests/golden/chat/tokenizer.pkl"), base.path().join("tokenizer/tokenizer.pkl")).unwrap();
    let checkpoints = base.path().join("base_checkpoints/d2");
    std::fs::create_dir_all(&checkpoints).unwrap();
    for f in ["model_000000.pt", "meta_000000.json"] {
        std::fs::copy(root().join("tests/golden/core/model_d2").join(f), checkpoints.join(f)).unwrap();
    }
    let bundle = root().join("tests/golden/core/bundles/golden_b");
    stdout(&nanochat(base.path(), &["base-eval", "--bundle", bundle.to_str().unwrap()], None));
    let csv = std::fs::read_to_string(base.path().join("base_eval/base_model_000000.csv")).unwrap();
    let core = golden()["runs"][2]["core_metric"].as_f64().unwrap();
    assert!(csv.ends_with(&format!("{:<35}, {:<10}, {core:<10.6}\n", "CORE", "")), "{csv}");
}
