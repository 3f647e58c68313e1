//! The prompts of one CORE example (NANOCHAT.md §6.1): the few-shot examples drawn with
//! `random.Random(1234 + idx).sample` from the other examples, and the strings the reference's
//! Jinja templates render, whitespace for whitespace. Each few-shot block is followed by "\n\n".
//!
//! - multiple_choice: block `query + delim + choices[gold]`; one prompt per choice, `query + delim +
//!   choice`.
//! - schema: block `context_options[gold] + delim + continuation`; one prompt per context option,
//!   `option + delim + continuation`.
//! - language_modeling: block `trim(context) + delim + continuation`; two prompts, `trim(context) +
//!   delim` and the same with the continuation; the first is then stripped at both ends (a
//!   whitespace delimiter thus ends up in front of the continuation's tokens).
//!
//! `trim` and the strip are Python's `str.strip()`.
use super::bundle::CoreExample;
use crate::pyrandom::python::{PyRandom, PyRandomError};

/// Base of the few-shot seed: example `idx` draws with Random(FEWSHOT_SEED + idx) (§6.1).
pub const FEWSHOT_SEED: i64 = 1234;

/// The indices of the `k` few-shot examples of example `idx` among `n`, in the reference's order:
/// `Random(1234 + idx).sample([i for i in range(n) if i != idx], k)`; none when k = 0.
pub fn fewshot_indices(idx: usize, n: usize, k: usize) -> Result<Vec<usize>, PyRandomError> {
    if k == 0 {
        return Ok(Vec::new());
    }
    let mut rng = PyRandom::new(FEWSHOT_SEED + idx as i64);
    let picks = rng.sample(n.saturating_sub(1), k)?;
    Ok(picks.into_iter().map(|j| if j < idx { j } else { j + 1 }).collect())
}

/// The prompts of `item` after the few-shot examples `fewshot` (all of the same task type):
/// one per choice / context option, or for language modeling [without, with] the continuation.
pub fn render_prompts(item: &CoreExample, delimiter: &str, fewshot: &[&CoreExample]) -> Vec<String> {
    let mut prefix = String::new();
    for example in fewshot {
        match example {
            CoreExample::MultipleChoice { query, choices, gold } => {
                prefix.extend([query.as_str(), delimiter, choices[*gold].as_str()]);
            }
            CoreExample::Schema { context_options, continuation, gold } => {
                prefix.extend([context_options[*gold].as_str(), delimiter, continuation.as_str()]);
            }
            CoreExample::LanguageModeling { context, continuation } => {
                prefix.extend([python_strip(context), delimiter, continuation.as_str()]);
            }
        }
        prefix.push_str("\n\n");
    }
    match item {
        CoreExample::MultipleChoice { query, choices, .. } => {
            choices.iter().map(|choice| format!("{prefix}{query}{delimiter}{choice}")).collect()
        }
        CoreExample::Schema { context_options, continuation, .. } => {
            context_options.iter().map(|option| format!("{prefix}{option}{delimiter}{continuation}")).collect()
        }
        CoreExample::LanguageModeling { context, continuation } => {
            let without = format!("{prefix}{}{delimiter}", python_strip(context));
            let with = format!("{without}{continuation}");
            vec![python_strip(&without).to_string(), with]
        }
    }
}

/// Python's `str.strip()` with no argument: Unicode whitespace plus the separators U+001C..U+001F.
pub fn python_strip(text: &str) -> &str {
    text.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mc(query: &str, choices: &[&str], gold: usize) -> CoreExample {
        CoreExample::MultipleChoice {
            query: query.into(),
            choices: choices.iter().map(|c| c.to_string()).collect(),
            gold,
        }
    }

    fn lm(context: &str, continuation: &str) -> CoreExample {
        CoreExample::LanguageModeling { context: context.into(), continuation: continuation.into() }
    }

    #[test]
    fn renders_the_verified_reference_strings() {
        // NANOCHAT.md §6.1, checked against jinja2 3.1.6.
        let (f1, f2) = (mc("F1", &["x", "y"], 0), mc("F2", &["v", "w"], 1));
        let prompts = render_prompts(&mc("Q?", &["a", "b"], 0), "\nAnswer: ", &[&f1, &f2]);
        assert_eq!(
            prompts,
            ["F1\nAnswer: x\n\nF2\nAnswer: w\n\nQ?\nAnswer: a", "F1\nAnswer: x\n\nF2\nAnswer: w\n\nQ?\nAnswer: b"]
        );
        let shot = lm("f", "fc");
        assert_eq!(render_prompts(&lm("ctx", "end"), " ", &[&shot]), ["f fc\n\nctx", "f fc\n\nctx end"]);
    }

    #[test]
    fn language_modeling_trims_contexts_and_strips_the_prompt_without() {
        let shot = lm("  a shot \n", " its end");
        let prompts = render_prompts(&lm("\tctx  \n", "tail"), "\nAnswer: ", &[&shot]);
        assert_eq!(prompts[0], "a shot\nAnswer:  its end\n\nctx\nAnswer:");
        assert_eq!(prompts[1], "a shot\nAnswer:  its end\n\nctx\nAnswer: tail");
        assert_eq!(render_prompts(&lm(" c ", " x"), " ", &[]), ["c", "c  x"]);
        assert_eq!(python_strip("\u{1f}\u{a0}x y\u{3000}\n"), "x y");
        assert_eq!(python_strip("\u{200b}x"), "\u{200b}x", "zero-width space is not whitespace to Python");
    }

    #[test]
    fn schema_uses_the_gold_context_in_shots() {
        let shot = CoreExample::Schema {
            context_options: vec!["A1".into(), "A2 ".into()],
            continuation: "c1".into(),
            gold: 1,
        };
        let item =
            CoreExample::Schema { context_options: vec!["B1".into(), "B2".into()], continuation: "c2".into(), gold: 0 };
        assert_eq!(render_prompts(&item, " ", &[&shot]), ["A2  c1\n\nB1 c2", "A2  c1\n\nB2 c2"]);
    }

    #[test]
    fn fewshot_draws_skip_the_example_itself() {
        assert!(fewshot_indices(3, 10, 0).unwrap().is_empty());
        for idx in 0..10 {
            let picks = fewshot_indices(idx, 10, 9).unwrap();
            assert!(!picks.contains(&idx));
            let mut sorted = picks.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), 9);
        }
        assert!(fewshot_indices(0, 3, 3).is_err(), "more shots than other examples");
    }
}
