//! Conversation → token ids and loss mask (NANOCHAT.md §5.1, the reference's
//! `render_conversation` / `render_for_completion`):
//!
//! `<|bos|>` then per turn `<|user_start|> text <|user_end|>` (mask 0) or `<|assistant_start|>`
//! (mask 0) + content (mask 1; python calls wrapped in `<|python_start|>…<|python_end|>` mask 1,
//! tool output in `<|output_start|>…<|output_end|>` mask 0) + `<|assistant_end|>` (mask 1). A
//! leading system message is merged into the first user message as `system + "\n\n" + user`.
//! Text is encoded as ordinary text (special-token strings inside it are not special). The result
//! is truncated to `max_tokens` (§14.21).
use super::conversation::{Content, Conversation, PartKind, Role};
use crate::tokenizer::{BpeEncoder, TokenizerError};

/// Conversations are cut to this many tokens at render time (§5.1, §14.21).
pub const MAX_CONVERSATION_TOKENS: usize = 2048;

/// The ids of nanochat's chat special tokens (§1.2) in one tokenizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChatTokens {
    pub bos: u32,
    pub user_start: u32,
    pub user_end: u32,
    pub assistant_start: u32,
    pub assistant_end: u32,
    pub python_start: u32,
    pub python_end: u32,
    pub output_start: u32,
    pub output_end: u32,
}

impl ChatTokens {
    pub fn of(encoder: &BpeEncoder) -> Result<Self, TokenizerError> {
        let id = |name: &str| encoder.special_id(name);
        Ok(ChatTokens {
            bos: id("<|bos|>")?,
            user_start: id("<|user_start|>")?,
            user_end: id("<|user_end|>")?,
            assistant_start: id("<|assistant_start|>")?,
            assistant_end: id("<|assistant_end|>")?,
            python_start: id("<|python_start|>")?,
            python_end: id("<|python_end|>")?,
            output_start: id("<|output_start|>")?,
            output_end: id("<|output_end|>")?,
        })
    }
}

/// A rendered conversation: `mask[i] == 1` where the assistant is trained to produce `ids[i]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rendered {
    pub ids: Vec<u32>,
    pub mask: Vec<u8>,
}

impl Rendered {
    fn push(&mut self, id: u32, mask: u8) {
        self.ids.push(id);
        self.mask.push(mask);
    }
    fn extend(&mut self, ids: &[u32], mask: u8) {
        self.ids.extend_from_slice(ids);
        self.mask.extend(std::iter::repeat_n(mask, ids.len()));
    }
}

/// A conversation that breaks the rules of §5.1. Message numbers count from 0 in the conversation
/// as given (a leading system message is message 0).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("the conversation has no messages")]
    NoMessages,
    #[error("message 0 is a system message, so message 1 must come from the user{}", found.map(|r| format!(" (it comes from the {})", r.as_str())).unwrap_or_else(|| " (there is none)".into()))]
    SystemNotFollowedByUser { found: Option<Role> },
    #[error("message {index} comes from the {found}, but roles must alternate user, assistant, user, ... (expected {expected} here)", found = found.as_str(), expected = expected.as_str())]
    RolesNotAlternating { index: usize, found: Role, expected: Role },
    #[error("message {index}: {role} content must be a string, not a list of parts", role = role.as_str())]
    ContentNotString { index: usize, role: Role },
    #[error("the last message must come from the assistant to render the prompt for a completion (it comes from the {})", .0.as_str())]
    LastNotAssistant(Role),
}

/// Renders conversations with one tokenizer.
pub struct ChatRenderer<'a> {
    encoder: &'a BpeEncoder,
    tokens: ChatTokens,
}

impl<'a> ChatRenderer<'a> {
    pub fn new(encoder: &'a BpeEncoder) -> Result<Self, TokenizerError> {
        Ok(ChatRenderer { encoder, tokens: ChatTokens::of(encoder)? })
    }

    pub fn tokens(&self) -> &ChatTokens {
        &self.tokens
    }

    pub fn encoder(&self) -> &BpeEncoder {
        self.encoder
    }

    /// `render_conversation(conversation, max_tokens)` of §5.1.
    pub fn render(&self, conversation: &Conversation, max_tokens: usize) -> Result<Rendered, RenderError> {
        let t = &self.tokens;
        let messages = &conversation.messages;
        if messages.is_empty() {
            return Err(RenderError::NoMessages);
        }
        // The system message is folded into the first user message; `offset` maps the turn number
        // back to the message's index in the conversation for error messages.
        let mut merged_user: Option<String> = None;
        let offset = if messages[0].role == Role::System {
            let system = string_content(&messages[0].content, 0, Role::System)?;
            match messages.get(1) {
                Some(m) if m.role == Role::User => {
                    let user = string_content(&m.content, 1, Role::User)?;
                    merged_user = Some(format!("{system}\n\n{user}"));
                }
                other => return Err(RenderError::SystemNotFollowedByUser { found: other.map(|m| m.role) }),
            }
            1
        } else {
            0
        };
        let mut out = Rendered::default();
        out.push(t.bos, 0);
        for (turn, message) in messages[offset..].iter().enumerate() {
            let index = turn + offset;
            let expected = if turn % 2 == 0 { Role::User } else { Role::Assistant };
            if message.role != expected {
                return Err(RenderError::RolesNotAlternating { index, found: message.role, expected });
            }
            match message.role {
                Role::User => {
                    let text = match (turn, &merged_user) {
                        (0, Some(merged)) => merged.as_str(),
                        _ => string_content(&message.content, index, Role::User)?,
                    };
                    out.push(t.user_start, 0);
                    out.extend(&self.encoder.encode_ordinary(text), 0);
                    out.push(t.user_end, 0);
                }
                Role::Assistant => {
                    out.push(t.assistant_start, 0);
                    match &message.content {
                        Content::Text(text) => out.extend(&self.encoder.encode_ordinary(text), 1),
                        Content::Parts(parts) => {
                            for part in parts {
                                let ids = self.encoder.encode_ordinary(&part.text);
                                match part.kind {
                                    PartKind::Text => out.extend(&ids, 1),
                                    PartKind::Python => {
                                        out.push(t.python_start, 1);
                                        out.extend(&ids, 1);
                                        out.push(t.python_end, 1);
                                    }
                                    PartKind::PythonOutput => {
                                        out.push(t.output_start, 0);
                                        out.extend(&ids, 0);
                                        out.push(t.output_end, 0);
                                    }
                                }
                            }
                        }
                    }
                    out.push(t.assistant_end, 1);
                }
                Role::System => unreachable!("roles alternate user/assistant after the merge"),
            }
        }
        out.ids.truncate(max_tokens);
        out.mask.truncate(max_tokens);
        Ok(out)
    }

    /// `render_for_completion` of §5.1: the conversation without its final assistant message,
    /// rendered (and truncated) as above, plus `<|assistant_start|>`.
    pub fn render_for_completion(&self, conversation: &Conversation) -> Result<Vec<u32>, RenderError> {
        let last = conversation.messages.last().ok_or(RenderError::NoMessages)?;
        if last.role != Role::Assistant {
            return Err(RenderError::LastNotAssistant(last.role));
        }
        let prompt = Conversation {
            messages: conversation.messages[..conversation.messages.len() - 1].to_vec(),
            extra: Vec::new(),
        };
        let mut ids = self.render(&prompt, MAX_CONVERSATION_TOKENS)?.ids;
        ids.push(self.tokens.assistant_start);
        Ok(ids)
    }
}

fn string_content(content: &Content, index: usize, role: Role) -> Result<&str, RenderError> {
    match content {
        Content::Text(text) => Ok(text),
        Content::Parts(_) => Err(RenderError::ContentNotString { index, role }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::conversation::{Message, Part};
    use crate::tokenizer::special_tokens::SPECIAL_TOKENS;

    /// Byte-level tokens only (256 mergeable tokens): every byte is one id, so expected ids are easy.
    fn byte_encoder() -> BpeEncoder {
        BpeEncoder::new((0..=255u8).map(|b| vec![b]).collect(), &SPECIAL_TOKENS).unwrap()
    }

    fn bytes(s: &str) -> Vec<u32> {
        s.bytes().map(u32::from).collect()
    }

    #[test]
    fn layout_and_mask_follow_the_table() {
        let enc = byte_encoder();
        let r = ChatRenderer::new(&enc).unwrap();
        let t = *r.tokens();
        assert_eq!((t.bos, t.output_end), (256, 264));
        let conv = Conversation::new(vec![
            Message::text(Role::System, "S"),
            Message::text(Role::User, "U"),
            Message::parts(
                Role::Assistant,
                vec![
                    Part::new(PartKind::Text, "a"),
                    Part::new(PartKind::Python, "1"),
                    Part::new(PartKind::PythonOutput, "2"),
                ],
            ),
            Message::text(Role::User, "v"),
            Message::text(Role::Assistant, "b"),
        ]);
        let out = r.render(&conv, MAX_CONVERSATION_TOKENS).unwrap();
        let mut ids = vec![t.bos, t.user_start];
        ids.extend(bytes("S\n\nU"));
        ids.extend([t.user_end, t.assistant_start, b'a' as u32, t.python_start, b'1' as u32, t.python_end]);
        ids.extend([t.output_start, b'2' as u32, t.output_end, t.assistant_end, t.user_start, b'v' as u32, t.user_end]);
        ids.extend([t.assistant_start, b'b' as u32, t.assistant_end]);
        assert_eq!(out.ids, ids);
        let mut mask = vec![0u8; 2 + 4 + 2];
        mask.extend([1, 1, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 1, 1]);
        assert_eq!(out.mask, mask);
        assert_eq!(r.render(&conv, 5).unwrap().ids, ids[..5]);
        let prompt = r.render_for_completion(&conv).unwrap();
        assert_eq!(prompt[prompt.len() - 1], t.assistant_start);
        assert_eq!(prompt[..prompt.len() - 1], ids[..ids.len() - 3]);
        // Special-token text inside content is ordinary text.
        let conv = Conversation::new(vec![Message::text(Role::User, "<|bos|>")]);
        assert_eq!(r.render(&conv, 100).unwrap().ids[2..9], bytes("<|bos|>")[..]);
    }

    #[test]
    fn rule_breaking_conversations_are_errors() {
        let enc = byte_encoder();
        let r = ChatRenderer::new(&enc).unwrap();
        let render = |messages: Vec<Message>| r.render(&Conversation::new(messages), 100).unwrap_err().to_string();
        assert_eq!(render(vec![]), "the conversation has no messages");
        let e = render(vec![Message::text(Role::User, "a"), Message::text(Role::User, "b")]);
        assert!(e.contains("message 1 comes from the user") && e.contains("expected assistant"), "{e}");
        let e = render(vec![Message::text(Role::System, "s"), Message::text(Role::Assistant, "b")]);
        assert!(e.contains("message 1 must come from the user (it comes from the assistant)"), "{e}");
        assert!(render(vec![Message::text(Role::System, "s")]).contains("there is none"));
        let e = render(vec![Message::parts(Role::User, vec![Part::new(PartKind::Text, "x")])]);
        assert!(e.contains("message 0: user content must be a string"), "{e}");
        let e = render(vec![
            Message::text(Role::System, "s"),
            Message::text(Role::User, "u"),
            Message::text(Role::System, "t"),
        ]);
        assert!(e.contains("message 2 comes from the system"), "{e}");
        let conv = Conversation::new(vec![Message::text(Role::User, "u")]);
        assert!(r.render_for_completion(&conv).unwrap_err().to_string().contains("comes from the user"));
    }
}
