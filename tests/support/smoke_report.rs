//! Test support: what a report.md of the smoke preset's stages must hold (the report header, one
//! section per stage that writes one, the BASE/MID/SFT/RL summary table).
pub fn assert_is_smoke_report(report: &str) {
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
    ] {
        assert!(report.contains(section), "{section} missing:\n{report}");
    }
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
}
