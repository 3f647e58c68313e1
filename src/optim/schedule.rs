//! Learning-rate and momentum schedules of base training (NANOCHAT.md §4.4).

/// LR multiplier at step `it` of `num_iterations`: linear warm-up over round(warmup_ratio·N) steps,
/// constant, then linear warm-down over the last round(warmdown_ratio·N) steps to `final_lr_frac`.
pub fn lr_multiplier(it: i64, num_iterations: i64, warmup_ratio: f64, warmdown_ratio: f64, final_lr_frac: f64) -> f64 {
    let n = num_iterations as f64;
    let warmup = (warmup_ratio * n).round() as i64;
    let warmdown = (warmdown_ratio * n).round() as i64;
    if it < warmup {
        (it + 1) as f64 / warmup as f64
    } else if it <= num_iterations - warmdown {
        1.0
    } else {
        let progress = (num_iterations - it) as f64 / warmdown as f64;
        progress + (1.0 - progress) * final_lr_frac
    }
}

/// Muon momentum: (1−f)·start + f·end with f = min(it/warmup_steps, 1) (§4.4: 0.85 → 0.95 over 300).
pub fn muon_momentum(it: i64, start: f64, end: f64, warmup_steps: u32) -> f64 {
    let f = (it as f64 / warmup_steps.max(1) as f64).min(1.0);
    (1.0 - f) * start + f * end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn d20_schedule() {
        // N = 21,400, warm-down 20 %: constant through step 17,120, then linear to 0 at 21,400 (§4.4).
        assert_eq!(lr_multiplier(0, 21_400, 0.0, 0.2, 0.0), 1.0);
        assert_eq!(lr_multiplier(17_120, 21_400, 0.0, 0.2, 0.0), 1.0);
        assert!((lr_multiplier(17_121, 21_400, 0.0, 0.2, 0.0) - 4279.0 / 4280.0).abs() < 1e-12);
        assert_eq!(lr_multiplier(21_400, 21_400, 0.0, 0.2, 0.0), 0.0);
        assert!((lr_multiplier(21_400, 21_400, 0.0, 0.2, 0.1) - 0.1).abs() < 1e-12);
        assert_eq!(lr_multiplier(0, 100, 0.1, 0.2, 0.0), 0.1);
    }

    #[test]
    fn momentum_warmup() {
        assert_eq!(muon_momentum(0, 0.85, 0.95, 300), 0.85);
        assert!((muon_momentum(150, 0.85, 0.95, 300) - 0.90).abs() < 1e-12);
        assert_eq!(muon_momentum(10_000, 0.85, 0.95, 300), 0.95);
    }
}
