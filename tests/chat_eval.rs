//! `nanochat chat-eval` against the reference's `scripts/chat_eval.py` (tests/golden/chat/chat_eval.json):
//! the same d2 weights (as the "base" phase) and stand-in tasks give the same response for every
//! problem (the chosen letter; each sample's completion, greedy and seeded sampling) and the same
//! result and accuracy; the report section; ChatCORE when all six tasks ran.
#[path = "support/chat_fixtures.rs"]
mod chat_fixtures;

use chat_fixtures::{chat_base, golden, nanochat, stdout};
use serde_json::Value;

fn read_jsonl(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn every_problem_gets_the_reference_response_and_result() {
    let base = chat_base();
    let fixture = golden("chat_eval.json");
    let runs = fixture["runs"].as_array().unwrap();
    // The golden's runs, grouped by their settings.
    let mut groups: Vec<(Value, Vec<&Value>)> = Vec::new();
    for run in runs {
        match groups.iter_mut().find(|(s, _)| *s == run["settings"]) {
            Some((_, group)) => group.push(run),
            None => groups.push((run["settings"].clone(), vec![run])),
        }
    }
    assert_eq!(groups.len(), 2);
    let mut compared = 0;
    for (settings, group) in groups {
        let tasks: Vec<&str> = group.iter().map(|r| r["task"].as_str().unwrap()).collect();
        let details = base.dir.path().join("details.jsonl");
        let arg = |key: &str| settings[key].to_string();
        let out = nanochat(
            base.dir.path(),
            &[
                "chat-eval",
                "--source",
                "base",
                "-a",
                &tasks.join("|"),
                "-b",
                &arg("batch_size"),
                "-n",
                &arg("num_samples"),
                "-m",
                &arg("max_new_tokens"),
                "-t",
                &arg("temperature"),
                "-k",
                &arg("top_k"),
                "-x",
                &arg("max_problems"),
                "--details",
                details.to_str().unwrap(),
            ],
            None,
        );
        stdout(&out);
        let lines = read_jsonl(&details);
        for run in group {
            let task = run["task"].as_str().unwrap();
            let ours: Vec<&Value> = lines.iter().filter(|l| l["task"] == task).collect();
            // One reference call per problem and sample, in order.
            let calls = run["calls"].as_array().unwrap();
            let samples = settings["num_samples"].as_u64().unwrap() as usize;
            assert_eq!(ours.len() * samples, calls.len(), "{task}");
            for (p, problem) in ours.iter().enumerate() {
                assert_eq!(problem["index"], p, "{task}");
                let expected = &calls[p * samples..(p + 1) * samples];
                let responses = problem["responses"].as_array().unwrap();
                for (response, call) in responses.iter().zip(expected) {
                    assert_eq!(response, &call["response"], "{task} problem {p}");
                }
                let passed = expected.iter().any(|c| c["result"] == 1);
                assert_eq!(problem["passed"].as_bool(), Some(passed), "{task} problem {p}");
                compared += 1;
            }
            let accuracy = ours.iter().filter(|l| l["passed"] == true).count() as f64 / ours.len() as f64;
            assert_eq!(accuracy, run["accuracy"].as_f64().unwrap(), "{task}");
        }
    }
    assert!(compared >= 30, "{compared} problems compared");
}

#[test]
fn the_report_section_has_every_task_and_chatcore() {
    let base = chat_base();
    let out = nanochat(base.dir.path(), &["chat-eval", "-i", "base", "-x", "3", "-m", "8"], None);
    stdout(&out);
    let section: Value =
        serde_json::from_str(&std::fs::read_to_string(base.paths.report().join("chat-evaluation-base.json")).unwrap())
            .unwrap();
    let text = section.to_string();
    for key in ["ARC-Easy", "ARC-Challenge", "MMLU", "GSM8K", "HumanEval", "SpellingBee", "ChatCORE metric"] {
        assert!(text.contains(&format!("\"{key}\"")), "{key} missing: {text}");
    }
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("ChatCORE: "), "{log}");
    // The gpt2 presets evaluate 92d63d4's five tasks (no SpellingBee), and ChatCORE is theirs.
    let out =
        nanochat(base.dir.path(), &["--preset", "gpt2-smoke", "chat-eval", "-i", "base", "-x", "3", "-m", "8"], None);
    stdout(&out);
    let text = std::fs::read_to_string(base.paths.report().join("chat-evaluation-base.json")).unwrap();
    assert!(!text.contains("\"SpellingBee\"") && text.contains("\"ChatCORE metric\""), "{text}");
    // An unknown task is an error naming the tasks.
    let out = nanochat(base.dir.path(), &["chat-eval", "-i", "base", "-a", "GSM8K|gsm"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown chat task \"gsm\""));
}

#[test]
fn humaneval_replies_are_judged_by_running_them_in_the_sandbox() {
    use nanochat::chat::conversation::Content;
    let base = chat_base();
    let task = nanochat::eval::chat_eval::open_eval_task(&base.paths, "HumanEval").unwrap();
    for index in 0..3 {
        let conversation = task.get(index).unwrap();
        let Content::Text(solution) = &conversation.messages[1].content else { panic!("a text answer") };
        // The canonical solution, as a chat model would write it: in a fenced block after some words.
        let reply = format!("Here is the function:\n\n```python\n{solution}\n```\nIt passes the tests.");
        assert!(task.evaluate(&conversation, &reply).unwrap(), "problem {index}");
        // The same signature returning None: valid Python that fails the tests.
        let broken = format!("```python\n{}:\n    return None\n```", solution.split(":\n").next().unwrap());
        assert!(!task.evaluate(&conversation, &broken).unwrap(), "problem {index}: {broken}");
    }
}
