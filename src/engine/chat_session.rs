//! A conversation with a chat model, as `nanochat chat` holds it (NANOCHAT.md §7, [A']
//! `chat_cli.py`): the token list grows by `<|user_start|>` text `<|user_end|>`
//! `<|assistant_start|>` and the reply, which always ends in `<|assistant_end|>` (appended when
//! generation stopped at the token limit). Text streams out whole characters at a time; special
//! tokens are not shown.
use super::chat_engine::{CausalModel, Engine, GenerationSettings};
use super::utf8_stream::Utf8Stream;
use crate::tokenizer::TokenizerError;

pub struct ChatSession<'a, M: CausalModel> {
    engine: Engine<'a, M>,
    settings: GenerationSettings,
    tokens: Vec<u32>,
}

impl<'a, M: CausalModel> ChatSession<'a, M> {
    pub fn new(engine: Engine<'a, M>, settings: GenerationSettings) -> Self {
        let tokens = vec![engine.chat_tokens().bos];
        ChatSession { engine, settings, tokens }
    }

    pub fn set_settings(&mut self, settings: GenerationSettings) {
        self.settings = settings;
    }

    /// Starts a new conversation.
    pub fn clear(&mut self) {
        self.tokens.truncate(1);
    }

    /// The conversation so far, as token ids.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Adds the user's message, generates the reply streaming its text to `on_text`, and returns it.
    pub fn reply(&mut self, user: &str, mut on_text: impl FnMut(&str)) -> Result<String, TokenizerError> {
        let t = *self.engine.chat_tokens();
        let encoder = self.engine.encoder();
        self.tokens.push(t.user_start);
        self.tokens.extend(encoder.encode_ordinary(user));
        self.tokens.extend([t.user_end, t.assistant_start]);
        let mut response: Vec<u32> = Vec::new();
        let mut stream = Utf8Stream::new();
        let mut text = String::new();
        let settings = GenerationSettings { num_samples: 1, ..self.settings };
        self.engine.generate(&self.tokens, &settings, |column, _| {
            let token = column[0];
            response.push(token);
            if !encoder.is_special(token) {
                let piece = stream.push(encoder.token_bytes(token).unwrap_or_default());
                on_text(&piece);
                text.push_str(&piece);
            }
            true
        });
        let rest = stream.finish();
        on_text(&rest);
        text.push_str(&rest);
        if response.last() != Some(&t.assistant_end) {
            response.push(t.assistant_end);
        }
        self.tokens.extend(response);
        Ok(text)
    }
}
