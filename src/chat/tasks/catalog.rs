//! The tasks by name, as `nanochat tasks` and the stages refer to them, and the training and
//! validation mixtures of midtraining (§5.3) and SFT (§5.4), built from the stage's config.
use std::sync::Arc;

use super::arc::Arc as ArcTask;
use super::custom_json::CustomJson;
use super::gsm8k::Gsm8k;
use super::humaneval::HumanEval;
use super::mmlu::Mmlu;
use super::smoltalk::SmolTalk;
use super::spelling::{SimpleSpelling, SpellingBee};
use super::{Examples, SharedTask, Slice, Sliced, TaskError, TaskMixture};
use crate::config::{ChatSftConfig, MidTrainConfig};
use crate::paths::Paths;

/// One entry of `nanochat tasks list`.
pub struct CatalogEntry {
    pub name: &'static str,
    pub splits: &'static [&'static str],
    pub default_split: &'static str,
    pub description: &'static str,
}

/// Every task and mixture `nanochat tasks show` knows.
pub const CATALOG: &[CatalogEntry] = &[
    CatalogEntry {
        name: "smoltalk",
        splits: &["train", "test"],
        default_split: "train",
        description: "SmolTalk general conversations (HuggingFaceTB/smol-smoltalk)",
    },
    CatalogEntry {
        name: "mmlu",
        splits: &["test", "validation", "dev"],
        default_split: "test",
        description: "MMLU multiple choice, subset all (cais/mmlu)",
    },
    CatalogEntry {
        name: "mmlu-aux",
        splits: &["train"],
        default_split: "train",
        description: "MMLU auxiliary_train multiple choice (cais/mmlu)",
    },
    CatalogEntry {
        name: "arc-easy",
        splits: &["train", "validation", "test"],
        default_split: "train",
        description: "ARC-Easy science questions (allenai/ai2_arc)",
    },
    CatalogEntry {
        name: "arc-challenge",
        splits: &["train", "validation", "test"],
        default_split: "train",
        description: "ARC-Challenge science questions (allenai/ai2_arc)",
    },
    CatalogEntry {
        name: "gsm8k",
        splits: &["train", "test"],
        default_split: "train",
        description: "GSM8K math with calculator calls, subset main (openai/gsm8k)",
    },
    CatalogEntry {
        name: "humaneval",
        splits: &["test"],
        default_split: "test",
        description: "HumanEval Python problems (openai/openai_humaneval)",
    },
    CatalogEntry {
        name: "identity",
        splits: &["train"],
        default_split: "train",
        description: "identity conversations (CustomJSON)",
    },
    CatalogEntry {
        name: "spellingbee",
        splits: &["train", "test"],
        default_split: "train",
        description: "count a letter in a word, by hand and with Python (size --size, default 1000)",
    },
    CatalogEntry {
        name: "simplespelling",
        splits: &["train", "test"],
        default_split: "train",
        description: "spell a word (size --size, default 1000)",
    },
    CatalogEntry {
        name: "mid",
        splits: &["train", "val"],
        default_split: "train",
        description: "the midtraining mixture of the preset (mid_train.*)",
    },
    CatalogEntry {
        name: "sft",
        splits: &["train", "val"],
        default_split: "train",
        description: "the SFT mixture of the preset (chat_sft.*)",
    },
];

/// The reference's default size of the synthetic spelling tasks.
pub const DEFAULT_SPELLING_SIZE: usize = 1000;

/// `examples` behind `slice`, as a task the stages share.
pub fn shared<E: Examples + 'static>(examples: E, slice: Slice) -> Result<SharedTask, TaskError> {
    Ok(Arc::new(Sliced::new(examples, slice)?))
}

/// A named task or mixture. `size` applies to the spelling tasks; the mixtures read their sizes
/// from the preset's `mid_train` / `chat_sft` sections.
pub fn open_task(
    paths: &Paths,
    name: &str,
    split: Option<&str>,
    size: Option<usize>,
    mid: &MidTrainConfig,
    sft: &ChatSftConfig,
) -> Result<SharedTask, TaskError> {
    let entry = CATALOG.iter().find(|e| e.name == name).ok_or_else(|| {
        let names: Vec<&str> = CATALOG.iter().map(|e| e.name).collect();
        TaskError::InvalidArgs(format!("unknown task {name:?}; tasks: {}", names.join(", ")))
    })?;
    let split = split.unwrap_or(entry.default_split);
    if !entry.splits.contains(&split) {
        return Err(TaskError::InvalidArgs(format!("{name} has splits {}, not {split:?}", entry.splits.join(", "))));
    }
    let all = Slice::default();
    let size = size.unwrap_or(DEFAULT_SPELLING_SIZE);
    match name {
        "smoltalk" => shared(SmolTalk::load(paths, split)?, all),
        "mmlu" => shared(Mmlu::load(paths, "all", split)?, all),
        "mmlu-aux" => shared(Mmlu::load(paths, "auxiliary_train", split)?, all),
        "arc-easy" => shared(ArcTask::load(paths, "ARC-Easy", split)?, all),
        "arc-challenge" => shared(ArcTask::load(paths, "ARC-Challenge", split)?, all),
        "gsm8k" => shared(Gsm8k::load(paths, "main", split)?, all),
        "humaneval" => shared(HumanEval::load(paths)?, all),
        "identity" => shared(CustomJson::identity(paths)?, all),
        "spellingbee" => shared(SpellingBee::load(paths, size, split)?, all),
        "simplespelling" => shared(SimpleSpelling::load(paths, size, split)?, all),
        "mid" if split == "train" => mid_train_mixture(paths, mid),
        "mid" => mid_val_mixture(paths, mid),
        "sft" if split == "train" => sft_train_mixture(paths, sft),
        "sft" => sft_val_task(paths),
        other => Err(TaskError::InvalidArgs(format!("no loader for the catalog entry {other:?}"))),
    }
}

/// §5.3 training mixture: SmolTalk train, MMLU auxiliary_train, GSM8K main train, the identity
/// conversations `identity_epochs` times, SimpleSpelling and SpellingBee (train).
pub fn mid_train_mixture(paths: &Paths, c: &MidTrainConfig) -> Result<SharedTask, TaskError> {
    let all = Slice::default();
    let identity: SharedTask = shared(CustomJson::identity(paths)?, all)?;
    let mut tasks = vec![
        shared(SmolTalk::load(paths, "train")?, all)?,
        shared(Mmlu::load(paths, "auxiliary_train", "train")?, all)?,
        shared(Gsm8k::load(paths, "main", "train")?, all)?,
    ];
    tasks.extend((0..c.identity_epochs).map(|_| identity.clone()));
    let words = super::spelling::load_words(paths)?;
    tasks.push(shared(SimpleSpelling::with_words(words.clone(), c.simple_spelling_size as usize, "train")?, all)?);
    tasks.push(shared(SpellingBee::with_words(words, c.spelling_bee_size as usize, "train")?, all)?);
    shared(TaskMixture::new(tasks), all)
}

/// §5.3 validation mixture: SmolTalk test, MMLU all/test[:mmlu_val_stop], GSM8K test[:gsm8k_val_stop].
pub fn mid_val_mixture(paths: &Paths, c: &MidTrainConfig) -> Result<SharedTask, TaskError> {
    shared(val_mixture(paths, c.mmlu_val_stop as usize, c.gsm8k_val_stop as usize)?, Slice::default())
}

fn val_mixture(paths: &Paths, mmlu_stop: usize, gsm8k_stop: usize) -> Result<TaskMixture, TaskError> {
    let tasks = vec![
        shared(SmolTalk::load(paths, "test")?, Slice::default())?,
        shared(Mmlu::load(paths, "all", "test")?, Slice::stop(mmlu_stop))?,
        shared(Gsm8k::load(paths, "main", "test")?, Slice::stop(gsm8k_stop))?,
    ];
    Ok(TaskMixture::new(tasks))
}

/// nanochat 92d63d4's SFT training mixture (scripts/chat_sft.py, §12): SmolTalk train, MMLU's
/// auxiliary training rows `mmlu_epochs` times, GSM8K main train `gsm8k_epochs` times. The reference
/// reads the auxiliary rows as cais/mmlu all/auxiliary_train; here they are the auxiliary_train
/// subset's train split (each row nested in a `train` field, which [`Mmlu`] unwraps), taken to hold
/// the same rows in the same order (the stand-in datasets have only this one).
pub fn sft_train_mixture_92d63d4(
    paths: &Paths,
    mmlu_epochs: usize,
    gsm8k_epochs: usize,
) -> Result<TaskMixture, TaskError> {
    let all = Slice::default();
    let mmlu = shared(Mmlu::load(paths, "auxiliary_train", "train")?, all)?;
    let gsm8k = shared(Gsm8k::load(paths, "main", "train")?, all)?;
    let mut tasks = vec![shared(SmolTalk::load(paths, "train")?, all)?];
    tasks.extend(std::iter::repeat_n(mmlu, mmlu_epochs));
    tasks.extend(std::iter::repeat_n(gsm8k, gsm8k_epochs));
    Ok(TaskMixture::new(tasks))
}

/// nanochat 92d63d4's SFT validation mixture: SmolTalk test, MMLU all/test[:5200], GSM8K
/// main/test[:420] (the §5.3 validation mixture at the reference's sizes).
pub fn sft_val_mixture_92d63d4(paths: &Paths) -> Result<TaskMixture, TaskError> {
    val_mixture(paths, 5200, 420)
}

/// §5.4 training mixture: ARC-Easy and ARC-Challenge train, GSM8K main train,
/// SmolTalk train[:smoltalk_stop], the identity conversations, SimpleSpelling and SpellingBee.
pub fn sft_train_mixture(paths: &Paths, c: &ChatSftConfig) -> Result<SharedTask, TaskError> {
    let all = Slice::default();
    let words = super::spelling::load_words(paths)?;
    let tasks = vec![
        shared(ArcTask::load(paths, "ARC-Easy", "train")?, all)?,
        shared(ArcTask::load(paths, "ARC-Challenge", "train")?, all)?,
        shared(Gsm8k::load(paths, "main", "train")?, all)?,
        shared(SmolTalk::load(paths, "train")?, Slice::stop(c.smoltalk_stop as usize))?,
        shared(CustomJson::identity(paths)?, all)?,
        shared(SimpleSpelling::with_words(words.clone(), c.simple_spelling_size as usize, "train")?, all)?,
        shared(SpellingBee::with_words(words, c.spelling_bee_size as usize, "train")?, all)?,
    ];
    shared(TaskMixture::new(tasks), all)
}

/// §5.4 validation: SmolTalk test.
pub fn sft_val_task(paths: &Paths) -> Result<SharedTask, TaskError> {
    shared(SmolTalk::load(paths, "test")?, Slice::default())
}

/// Whether the files a catalog entry reads are on disk (without loading them).
pub fn data_present(paths: &Paths, name: &str) -> bool {
    let has = |repo: &str, dir: &str| {
        std::fs::read_dir(paths.hf_dataset(repo).join(dir))
            .is_ok_and(|mut d| d.any(|e| e.is_ok_and(|e| e.path().extension().is_some_and(|x| x == "parquet"))))
    };
    let extra = |file: &str| paths.chat_extras().join(file).is_file();
    let words = || extra(super::spelling::WORD_LIST_FILE);
    let identity = || extra(super::custom_json::IDENTITY_FILE);
    match name {
        "smoltalk" => has(super::smoltalk::REPO, "data"),
        "mmlu" => has(super::mmlu::REPO, "all"),
        "mmlu-aux" => has(super::mmlu::REPO, "auxiliary_train"),
        "arc-easy" => has(super::arc::REPO, "ARC-Easy"),
        "arc-challenge" => has(super::arc::REPO, "ARC-Challenge"),
        "gsm8k" => has(super::gsm8k::REPO, "main"),
        "humaneval" => has(super::humaneval::REPO, "openai_humaneval"),
        "identity" => identity(),
        "spellingbee" | "simplespelling" => words(),
        "mid" => {
            ["smoltalk", "mmlu", "mmlu-aux", "gsm8k"].iter().all(|n| data_present(paths, n)) && words() && identity()
        }
        "sft" => {
            ["smoltalk", "arc-easy", "arc-challenge", "gsm8k"].iter().all(|n| data_present(paths, n))
                && words()
                && identity()
        }
        _ => false,
    }
}
