//! SpellingBee and SimpleSpelling (NANOCHAT.md §5.2): synthetic tasks over an English word list
//! (`words_alpha.txt`, one word per line). Example `i` draws from `random.Random(i)` (train) or
//! `Random(10_000_000 + i)` (test) in the reference's exact order, so the same index gives the same
//! conversation as the reference. SpellingBee counts a letter in a word by hand and with a Python
//! call; SimpleSpelling spells a word (its word list is first shuffled with `Random(42)`).
use std::path::{Path, PathBuf};

use super::{answers_match, EvalType, Examples, TaskError};
use crate::chat::conversation::{Conversation, Message, Part, PartKind, Role};
use crate::paths::Paths;
use crate::pyrandom::python::PyRandom;

/// The word list file in the chat extras directory (manifests/data/chat_data.toml).
pub const WORD_LIST_FILE: &str = "words_alpha.txt";
/// Seeds of test examples start here, beyond any train index (§5.2).
pub const TEST_SEED_OFFSET: i64 = 10_000_000;
/// SimpleSpelling's word-order shuffle seed (§5.2).
pub const SIMPLE_SPELLING_SHUFFLE_SEED: i64 = 42;
const LETTERS: &str = "abcdefghijklmnopqrstuvwxyz";
const QUOTES: [&str; 3] = ["", "'", "\""];

/// The user-message templates of the reference (30 English, 4 Spanish, 4 Chinese, 4 Korean,
/// 3 French, 3 German, 3 Japanese), in its order: the index drawn selects the same template.
pub const USER_TEMPLATES: [&str; 51] = [
    "How many {letter} are in the word {word}",
    "How many {letter} are in {word}",
    "Count the number of {letter} in {word}",
    "How many times does {letter} appear in {word}",
    "What's the count of {letter} in {word}",
    "In the word {word}, how many {letter} are there",
    "How many letter {letter} are in the word {word}",
    "Count how many {letter} appear in {word}",
    "Tell me the number of {letter} in {word}",
    "How many occurrences of {letter} are in {word}",
    "Find the count of {letter} in {word}",
    "Can you count the {letter} letters in {word}",
    "What is the frequency of {letter} in {word}",
    "How many {letter}s are in {word}",
    "How many {letter}'s are in {word}",
    "Count all the {letter} in {word}",
    "How many times is {letter} in {word}",
    "Number of {letter} in {word}",
    "Total count of {letter} in {word}",
    "How many {letter} does {word} have",
    "How many {letter} does {word} contain",
    "What's the number of {letter} in {word}",
    "{word} has how many {letter}",
    "In {word}, count the {letter}",
    "How many {letter} appear in {word}",
    "Count the {letter} in {word}",
    "Give me the count of {letter} in {word}",
    "How many instances of {letter} in {word}",
    "Show me how many {letter} are in {word}",
    "Calculate the number of {letter} in {word}",
    "¿Cuántas {letter} hay en {word}?",
    "¿Cuántas veces aparece {letter} en {word}?",
    "Cuenta las {letter} en {word}",
    "¿Cuántas letras {letter} tiene {word}?",
    "{word}中有多少个{letter}",
    "{word}里有几个{letter}",
    "数一下{word}中的{letter}",
    "{word}这个词里有多少{letter}",
    "{word}에 {letter}가 몇 개 있나요",
    "{word}에서 {letter}의 개수는",
    "{word}에 {letter}가 몇 번 나오나요",
    "{word}라는 단어에 {letter}가 몇 개",
    "Combien de {letter} dans {word}",
    "Combien de fois {letter} apparaît dans {word}",
    "Compte les {letter} dans {word}",
    "Wie viele {letter} sind in {word}",
    "Wie oft kommt {letter} in {word} vor",
    "Zähle die {letter} in {word}",
    "{word}に{letter}は何個ありますか",
    "{word}の中に{letter}がいくつ",
    "{word}に{letter}が何回出てくる",
];

/// The word list: each line stripped, as the reference reads it.
pub fn load_words(paths: &Paths) -> Result<Vec<String>, TaskError> {
    let path = paths.chat_extras().join(WORD_LIST_FILE);
    read_words(&path)
}

pub fn read_words(path: &Path) -> Result<Vec<String>, TaskError> {
    let text = std::fs::read_to_string(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            TaskError::MissingData {
                what: "the SpellingBee word list".into(),
                expected: WORD_LIST_FILE.into(),
                path: path.parent().map(PathBuf::from).unwrap_or_default(),
                hint: super::hf_dataset::download_hint(),
            }
        } else {
            TaskError::Read { path: path.to_path_buf(), source }
        }
    })?;
    let words: Vec<String> = text.lines().map(|l| l.trim().to_string()).collect();
    if words.is_empty() {
        return Err(TaskError::BadLine { path: path.to_path_buf(), line: 1, message: "the word list is empty".into() });
    }
    Ok(words)
}

fn split_seed(split: &str, index: usize) -> i64 {
    if split == "train" {
        index as i64
    } else {
        TEST_SEED_OFFSET + index as i64
    }
}

fn check_split(task: &str, split: &str) -> Result<(), TaskError> {
    if ["train", "test"].contains(&split) {
        Ok(())
    } else {
        Err(TaskError::InvalidArgs(format!("{task} split must be train|test, not {split:?}")))
    }
}

fn draw<'a, T>(rng: &mut PyRandom, items: &'a [T], what: &str) -> Result<&'a T, TaskError> {
    rng.choice(items).map_err(|e| TaskError::InvalidArgs(format!("cannot draw {what}: {e}")))
}

/// `template.format(letter=..., word=...)`: both placeholders replaced in one pass.
fn fill_template(template: &str, letter: &str, word: &str) -> String {
    let mut out = String::with_capacity(template.len() + word.len());
    let mut rest = template;
    while let Some(pos) = rest.find('{') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix("{letter}") {
            out.push_str(letter);
            rest = after;
        } else if let Some(after) = tail.strip_prefix("{word}") {
            out.push_str(word);
            rest = after;
        } else {
            out.push('{');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

fn spelled(word: &[char]) -> String {
    word.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",")
}

pub struct SpellingBee {
    size: usize,
    split: String,
    words: Vec<String>,
}

impl SpellingBee {
    pub fn load(paths: &Paths, size: usize, split: &str) -> Result<Self, TaskError> {
        Self::with_words(load_words(paths)?, size, split)
    }

    pub fn with_words(words: Vec<String>, size: usize, split: &str) -> Result<Self, TaskError> {
        check_split("SpellingBee", split)?;
        Ok(SpellingBee { size, split: split.into(), words })
    }
}

impl Examples for SpellingBee {
    fn name(&self) -> String {
        format!("SpellingBee/{}", self.split)
    }
    fn num_examples(&self) -> usize {
        self.size
    }
    fn example(&self, index: usize) -> Result<Conversation, TaskError> {
        let mut rng = PyRandom::new(split_seed(&self.split, index));
        let word: Vec<char> = draw(&mut rng, &self.words, "a word")?.chars().collect();
        let word_text: String = word.iter().collect();
        let letter = if rng.random() < 0.9 {
            *draw(&mut rng, &word, "a letter of the word")?
        } else {
            let letters: Vec<char> = LETTERS.chars().collect();
            *draw(&mut rng, &letters, "a letter")?
        };
        let count = word.iter().filter(|&&c| c == letter).count();
        let mut template = draw(&mut rng, &USER_TEMPLATES, "a template")?.to_string();
        if rng.random() < 0.3 {
            template = template.to_lowercase();
        }
        let letter_quote = draw(&mut rng, &QUOTES, "a quote")?;
        let word_quote = draw(&mut rng, &QUOTES, "a quote")?;
        let mut user = fill_template(
            &template,
            &format!("{letter_quote}{letter}{letter_quote}"),
            &format!("{word_quote}{word_text}{word_quote}"),
        );
        if rng.random() < 0.5 {
            user.push('?');
        }

        let mut manual = format!(
            "We are asked to find the number '{letter}' in the word '{word_text}'. Let me try a manual approach first.\n\n\
             First spell the word out:\n{word_text}:{}\n\nThen count the occurrences of '{letter}':\n",
            spelled(&word)
        );
        let mut running = 0;
        for (i, &c) in word.iter().enumerate() {
            if c == letter {
                running += 1;
                manual.push_str(&format!("{}:{c} hit! count={running}\n", i + 1));
            } else {
                manual.push_str(&format!("{}:{c}\n", i + 1));
            }
        }
        manual.push_str(&format!("\nThis gives us {running}."));
        let parts = vec![
            Part::new(PartKind::Text, manual),
            Part::new(PartKind::Text, "\n\nLet me double check this using Python:\n\n"),
            Part::new(PartKind::Python, format!("'{word_text}'.count('{letter}')")),
            Part::new(PartKind::PythonOutput, count.to_string()),
            Part::new(PartKind::Text, format!("\n\nPython gives us {count}.\n\nMy final answer is:\n\n#### {count}")),
        ];
        Ok(Conversation::new(vec![Message::text(Role::User, user), Message::parts(Role::Assistant, parts)]))
    }
    fn eval_type(&self) -> Option<EvalType> {
        Some(EvalType::Generative)
    }
    fn evaluate(&self, conversation: &Conversation, response: &str) -> Result<bool, TaskError> {
        answers_match(conversation, response, &self.name())
    }
}

pub struct SimpleSpelling {
    size: usize,
    split: String,
    words: Vec<String>,
}

impl SimpleSpelling {
    pub fn load(paths: &Paths, size: usize, split: &str) -> Result<Self, TaskError> {
        Self::with_words(load_words(paths)?, size, split)
    }

    pub fn with_words(mut words: Vec<String>, size: usize, split: &str) -> Result<Self, TaskError> {
        check_split("SimpleSpelling", split)?;
        PyRandom::new(SIMPLE_SPELLING_SHUFFLE_SEED).shuffle(&mut words);
        Ok(SimpleSpelling { size, split: split.into(), words })
    }
}

impl Examples for SimpleSpelling {
    fn name(&self) -> String {
        format!("SimpleSpelling/{}", self.split)
    }
    fn num_examples(&self) -> usize {
        self.size
    }
    fn example(&self, index: usize) -> Result<Conversation, TaskError> {
        let mut rng = PyRandom::new(split_seed(&self.split, index));
        let word = draw(&mut rng, &self.words, "a word")?;
        let letters: Vec<char> = word.chars().collect();
        Ok(Conversation::new(vec![
            Message::text(Role::User, format!("Spell the word: {word}")),
            Message::text(Role::Assistant, format!("{word}:{}", spelled(&letters))),
        ]))
    }
    fn eval_type(&self) -> Option<EvalType> {
        Some(EvalType::Generative)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_both_slots_once() {
        assert_eq!(fill_template("{word} has how many {letter}", "'r'", "cherry"), "cherry has how many 'r'");
        assert_eq!(fill_template("{x}{letter}", "a", "w"), "{x}a");
        assert_eq!(fill_template("{letter}", "{word}", "w"), "{word}");
    }

    #[test]
    fn the_count_in_the_answer_is_right() {
        let bee = SpellingBee::with_words(vec!["strawberry".into(), "banana".into()], 50, "train").unwrap();
        for i in 0..50 {
            let conv = bee.example(i).unwrap();
            let crate::chat::conversation::Content::Parts(parts) = &conv.messages[1].content else { panic!() };
            let call = &parts[2].text; // 'word'.count('l')
            let word = call.split('\'').nth(1).unwrap();
            let letter = call.split('\'').nth(3).unwrap().chars().next().unwrap();
            let count = word.chars().filter(|&c| c == letter).count();
            assert_eq!(parts[3].text, count.to_string());
            assert!(bee.evaluate(&conv, &format!("so #### {count}")).unwrap());
            assert!(!bee.evaluate(&conv, &format!("#### {}", count + 1)).unwrap());
        }
    }
}
