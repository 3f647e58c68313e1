//! Test support: what a report.md of the smoke preset's stages must hold (the report header, one
//! section per stage that writes one, the plots of the base, mid, SFT and RL metrics logs, the
//! BASE/MID/SFT/RL summary table), and that each plot is an SVG chart next to report.md.

/// The plots of the smoke preset's training stages (src/report/plots.rs).
const SMOKE_PLOTS: [&str; 6] =
    ["base_loss.svg", "base_lr.svg", "base_throughput.svg", "mid_loss.svg", "sft_loss.svg", "rl_reward.svg"];

/// `read_beside` reads a file of the report's directory by name (None when it is not there).
pub fn assert_is_smoke_report(report: &str, read_beside: impl Fn(&str) -> Option<Vec<u8>>) {
    assert!(report.starts_with("# nanochat training report"), "{report}");
    for section in [
        "## Hardware check",
        "## Data",
        "## Tokenizer training",
        "## Tokenizer evaluation",
        "## Base model training",
        "## Base model loss",
        "## Base model evaluation",
        "## Midtraining",
        "## Chat evaluation mid",
        "## Chat SFT",
        "## Chat evaluation sft",
        "## Chat RL",
        "## Chat evaluation rl",
        "## Plots",
    ] {
        assert!(report.contains(section), "{section} missing:\n{report}");
    }
    for file in SMOKE_PLOTS {
        let link = format!("]({file})");
        assert!(
            report.lines().any(|l| l.starts_with("![") && l.ends_with(&link)),
            "no image link to {file}:\n{report}"
        );
        let svg = read_beside(file).unwrap_or_else(|| panic!("{file} is not next to report.md"));
        let svg = String::from_utf8_lossy(&svg);
        let chart = svg.starts_with("<svg")
            && svg.contains("<polyline")
            && svg.contains("<text")
            && svg.trim_end().ends_with("</svg>");
        assert!(chart, "{file} is not an SVG chart:\n{svg}");
    }
    assert!(!report.contains("- Plot "), "a plot failed:\n{report}");
    assert!(report.contains("| Metric | BASE | MID | SFT | RL |"), "{report}");
    // The chat evaluations fill the MID and SFT columns of every chat row.
    for metric in ["ARC-Challenge", "ARC-Easy", "GSM8K", "HumanEval", "MMLU", "ChatCORE"] {
        let row = report
            .lines()
            .find(|l| l.starts_with(&format!("| {metric} |")))
            .unwrap_or_else(|| panic!("no {metric} row:\n{report}"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        for (column, cell) in [("MID", cells[3]), ("SFT", cells[4])] {
            assert!(cell.parse::<f64>().is_ok(), "{metric} {column} is {cell:?}:\n{report}");
        }
    }
    let core = report.lines().find(|l| l.starts_with("| CORE |")).unwrap_or_default();
    let base_cell = core.split('|').nth(2).unwrap_or_default().trim();
    assert!(base_cell.parse::<f64>().is_ok(), "the summary's CORE cell holds base-eval's value: {core:?}\n{report}");
    let gsm8k = report.lines().find(|l| l.starts_with("| GSM8K |")).unwrap_or_default();
    let rl_cell = gsm8k.split('|').nth(5).unwrap_or_default().trim();
    assert!(rl_cell.parse::<f64>().is_ok(), "the summary's RL column holds GSM8K: {gsm8k:?}\n{report}");
    for line in ["Total wall clock time: ", "Estimated cost: "] {
        assert!(report.lines().any(|l| l.starts_with(line)), "no {line:?} line:\n{report}");
    }
    // Bloat: sizes of this build's sources, counted when it was built.
    for field in ["Characters", "Lines", "Files", "Tokens (approx)", "Dependencies (Cargo.lock packages)"] {
        let value = report.lines().find_map(|l| l.strip_prefix(&format!("- {field}: "))).unwrap_or_default();
        assert!(value.parse::<u64>().is_ok_and(|n| n > 0), "Bloat {field} is {value:?}:\n{report}");
    }
    // Provenance: every stage's row, the build, the redo command and the checkpoints' sha256.
    let provenance = &report[report.find("## Provenance").unwrap_or_else(|| panic!("no Provenance:\n{report}"))..];
    assert!(provenance.contains("Build: nanochat ") && provenance.contains("libtorch "), "{provenance}");
    assert!(provenance.contains("Redo the run: `nanochat speedrun --preset smoke"), "{provenance}");
    for stage in
        ["doctor", "data", "tok-train", "base-train", "base-eval", "mid-train", "sft", "chat-rl", "chat-eval-rl"]
    {
        assert!(provenance.contains(&format!("| {stage} | ")), "no provenance row of {stage}:\n{provenance}");
    }
    for (dir, file) in
        [("base_d", "/model_"), ("mid_d", "/model_"), ("sft_d", "/model_"), ("rl_d", "/model_"), ("tok/", "")]
    {
        let checkpoint = format!("{dir}*{file}");
        let listed = provenance.lines().any(|l| {
            let mut parts = l.splitn(2, "  ");
            let digest = parts.next().unwrap_or_default();
            digest.len() == 64 && parts.next().is_some_and(|p| p.starts_with(dir) && p.contains(file))
        });
        assert!(listed, "no sha256 of {checkpoint}* among the outputs:\n{provenance}");
    }
}
