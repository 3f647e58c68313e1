//! Conversations as the chat stages see them (NANOCHAT.md §5.1): `{"messages": [...]}` with roles
//! system (optional, first), user, assistant; user content is a string, assistant content a string
//! or a list of parts `{"type": "text"|"python"|"python_output", "text": ...}`. Tasks attach extra
//! fields (MMLU's `subject` and `letters`, HumanEval's `test`, ...), kept in order after `messages`.
//!
//! Parsing checks only the shape of the JSON; the rules of a well-formed conversation (alternating
//! roles, string user content) are checked where the reference checks them, at rendering.
use serde_json::{Map, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// The kind of one part of an assistant message (§5.1 table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartKind {
    Text,
    /// A calculator call: `<|python_start|>…<|python_end|>`, supervised.
    Python,
    /// The tool's output: `<|output_start|>…<|output_end|>`, never supervised.
    PythonOutput,
}

impl PartKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PartKind::Text => "text",
            PartKind::Python => "python",
            PartKind::PythonOutput => "python_output",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    pub kind: PartKind,
    pub text: String,
}

impl Part {
    pub fn new(kind: PartKind, text: impl Into<String>) -> Self {
        Part { kind, text: text.into() }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub role: Role,
    pub content: Content,
}

impl Message {
    pub fn text(role: Role, text: impl Into<String>) -> Self {
        Message { role, content: Content::Text(text.into()) }
    }
    pub fn parts(role: Role, parts: Vec<Part>) -> Self {
        Message { role, content: Content::Parts(parts) }
    }
}

/// A conversation plus the extra fields a task attached to it.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Conversation {
    pub messages: Vec<Message>,
    /// Other top-level fields, in insertion order (e.g. `letters`, `subject`).
    pub extra: Vec<(String, Value)>,
}

#[derive(Debug, thiserror::Error, PartialEq, Clone)]
pub enum ConversationError {
    #[error("expected an object with \"messages\" or a list of messages, found {0}")]
    NotAConversation(&'static str),
    #[error("\"messages\" must be a list, found {0}")]
    MessagesNotAList(&'static str),
    #[error("message {index} is not an object")]
    MessageNotObject { index: usize },
    #[error("message {index} has no \"role\"")]
    MissingRole { index: usize },
    #[error("message {index} has role {role:?}; roles are \"system\", \"user\" and \"assistant\"")]
    UnknownRole { index: usize, role: String },
    #[error("message {index} has no \"content\"")]
    MissingContent { index: usize },
    #[error("message {index}: content must be a string or a list of parts, found {found}")]
    BadContent { index: usize, found: &'static str },
    #[error("message {index}, part {part}: a part is an object with \"type\" and a string \"text\"")]
    BadPart { index: usize, part: usize },
    #[error("message {index}, part {part}: unknown part type {kind:?} (known: text, python, python_output)")]
    UnknownPartType { index: usize, part: usize, kind: String },
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

impl Conversation {
    pub fn new(messages: Vec<Message>) -> Self {
        Conversation { messages, extra: Vec::new() }
    }

    pub fn with_extra(mut self, key: &str, value: Value) -> Self {
        self.extra.push((key.to_string(), value));
        self
    }

    pub fn extra(&self, key: &str) -> Option<&Value> {
        self.extra.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Parses `{"messages": [...], ...}` or the CustomJSON form, a bare list of messages.
    pub fn from_json(value: &Value) -> Result<Self, ConversationError> {
        let (messages, extra) = match value {
            Value::Array(list) => (list, Vec::new()),
            Value::Object(map) => {
                let messages = match map.get("messages") {
                    Some(Value::Array(list)) => list,
                    Some(other) => return Err(ConversationError::MessagesNotAList(json_kind(other))),
                    None => return Err(ConversationError::NotAConversation("an object without \"messages\"")),
                };
                let extra = map.iter().filter(|(k, _)| *k != "messages").map(|(k, v)| (k.clone(), v.clone())).collect();
                (messages, extra)
            }
            other => return Err(ConversationError::NotAConversation(json_kind(other))),
        };
        let messages = messages.iter().enumerate().map(|(i, m)| parse_message(i, m)).collect::<Result<_, _>>()?;
        Ok(Conversation { messages, extra })
    }

    /// The reference's dict form: `{"messages": [...], <extra fields>}`.
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        let messages = self
            .messages
            .iter()
            .map(|m| {
                let content = match &m.content {
                    Content::Text(t) => Value::String(t.clone()),
                    Content::Parts(parts) => Value::Array(
                        parts.iter().map(|p| serde_json::json!({"type": p.kind.as_str(), "text": p.text})).collect(),
                    ),
                };
                serde_json::json!({"role": m.role.as_str(), "content": content})
            })
            .collect();
        map.insert("messages".into(), Value::Array(messages));
        for (k, v) in &self.extra {
            map.insert(k.clone(), v.clone());
        }
        Value::Object(map)
    }
}

impl std::fmt::Display for Conversation {
    /// A readable transcript: one block per message, assistant parts labelled.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, m) in self.messages.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            writeln!(f, "[{}]", m.role.as_str())?;
            match &m.content {
                Content::Text(text) => writeln!(f, "{text}")?,
                Content::Parts(parts) => {
                    for p in parts {
                        match p.kind {
                            PartKind::Text => write!(f, "{}", p.text)?,
                            PartKind::Python => write!(f, "<<python: {}>>", p.text)?,
                            PartKind::PythonOutput => write!(f, "<<output: {}>>", p.text)?,
                        }
                    }
                    writeln!(f)?;
                }
            }
        }
        for (k, v) in &self.extra {
            let shown = match v {
                Value::String(s) if s.chars().count() > 200 => {
                    format!("{:?}… ({} chars)", s.chars().take(200).collect::<String>(), s.chars().count())
                }
                other => other.to_string(),
            };
            writeln!(f, "({k}: {shown})")?;
        }
        Ok(())
    }
}

fn parse_message(index: usize, value: &Value) -> Result<Message, ConversationError> {
    let map = value.as_object().ok_or(ConversationError::MessageNotObject { index })?;
    let role = match map.get("role") {
        None => return Err(ConversationError::MissingRole { index }),
        Some(Value::String(r)) if r == "system" => Role::System,
        Some(Value::String(r)) if r == "user" => Role::User,
        Some(Value::String(r)) if r == "assistant" => Role::Assistant,
        Some(other) => {
            let role = other.as_str().map(str::to_string).unwrap_or_else(|| other.to_string());
            return Err(ConversationError::UnknownRole { index, role });
        }
    };
    let content = match map.get("content") {
        None => return Err(ConversationError::MissingContent { index }),
        Some(Value::String(text)) => Content::Text(text.clone()),
        Some(Value::Array(parts)) => Content::Parts(
            parts.iter().enumerate().map(|(part, p)| parse_part(index, part, p)).collect::<Result<_, _>>()?,
        ),
        Some(other) => return Err(ConversationError::BadContent { index, found: json_kind(other) }),
    };
    Ok(Message { role, content })
}

fn parse_part(index: usize, part: usize, value: &Value) -> Result<Part, ConversationError> {
    let bad = ConversationError::BadPart { index, part };
    let map = value.as_object().ok_or(bad.clone())?;
    let kind = match map.get("type").and_then(Value::as_str).ok_or(bad.clone())? {
        "text" => PartKind::Text,
        "python" => PartKind::Python,
        "python_output" => PartKind::PythonOutput,
        other => return Err(ConversationError::UnknownPartType { index, part, kind: other.to_string() }),
    };
    let text = map.get("text").and_then(Value::as_str).ok_or(bad)?;
    Ok(Part { kind, text: text.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_both_forms_and_round_trips() {
        let value = json!({"messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "python", "text": "1+1"},
                                               {"type": "python_output", "text": "2"}]}
        ], "letters": ["A", "B"]});
        let conv = Conversation::from_json(&value).unwrap();
        assert_eq!(conv.messages.len(), 2);
        assert_eq!(conv.extra("letters"), Some(&json!(["A", "B"])));
        assert_eq!(conv.to_json(), value);
        let list = json!([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]);
        let conv = Conversation::from_json(&list).unwrap();
        assert_eq!(conv.messages[1], Message::text(Role::Assistant, "a"));
    }

    #[test]
    fn shape_errors_name_the_message_and_part() {
        let err = |v: Value| Conversation::from_json(&v).unwrap_err().to_string();
        assert!(err(json!("x")).contains("found a string"));
        assert!(err(json!({"messages": {}})).contains("must be a list"));
        assert!(err(json!([{"content": "x"}])).contains("message 0 has no \"role\""));
        assert!(err(json!([{"role": "bot", "content": "x"}])).contains("role \"bot\""));
        assert!(err(json!([{"role": "user"}])).contains("message 0 has no \"content\""));
        assert!(err(json!([{"role": "user", "content": 3}])).contains("found a number"));
        let e = err(json!([{"role": "user", "content": "q"},
                           {"role": "assistant", "content": [{"type": "image", "text": "x"}]}]));
        assert!(e.contains("message 1, part 0: unknown part type \"image\""), "{e}");
        let e = err(json!([{"role": "assistant", "content": [{"type": "text"}]}]));
        assert!(e.contains("message 0, part 0"), "{e}");
    }
}
