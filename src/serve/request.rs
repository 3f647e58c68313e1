//! The request bodies of both chat APIs, read from JSON by hand so that every rejection names the
//! field at fault (`messages[2].content`), and checked against the reference's limits (NANOCHAT.md §9).
//!
//! - `POST /chat/completions` (the reference's): `messages` of user/assistant turns, `temperature`,
//!   `top_k`, `max_tokens`, and our `seed`.
//! - `POST /v1/chat/completions` (OpenAI's): the same plus `model`, `n`, `stream`, `stream_options`,
//!   system/developer messages (merged into the next user message as the reference's renderer does),
//!   content as text parts, and the sampling knobs of that API this model cannot honour accepted only
//!   at their neutral value.
//!
//! Anything else, an unknown field included, is an [`ApiError`] with status 400.
use serde_json::{Map, Value};

use super::error::ApiError;

/// §9 limits.
pub const MAX_MESSAGES: usize = 500;
pub const MAX_MESSAGE_CHARS: usize = 8_000;
pub const MAX_TOTAL_CHARS: usize = 32_000;
pub const MAX_TEMPERATURE: f64 = 2.0;
pub const MAX_TOP_K: i64 = 200;
pub const MAX_TOKENS_LIMIT: i64 = 4_096;
/// Completions per OpenAI request (`n`).
pub const MAX_CHOICES: i64 = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Turn {
    pub role: Role,
    pub content: String,
}

/// The server's sampling defaults (`nanochat serve -t -k -m`; §9: 0.8, 50, 512).
#[derive(Clone, Copy, Debug)]
pub struct Defaults {
    pub temperature: f64,
    pub top_k: i64,
    pub max_tokens: usize,
}

/// A validated request of either API.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatRequest {
    pub turns: Vec<Turn>,
    pub temperature: f64,
    pub top_k: i64,
    pub max_tokens: usize,
    /// None: a fresh random seed.
    pub seed: Option<i64>,
    pub n: usize,
    pub stream: bool,
    pub include_usage: bool,
    /// The `model` the client asked for (OpenAI API).
    pub model: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    Reference,
    OpenAi,
}

const REFERENCE_FIELDS: &[&str] = &["messages", "temperature", "top_k", "max_tokens", "seed"];
const OPENAI_FIELDS: &[&str] = &[
    "messages",
    "model",
    "temperature",
    "top_k",
    "max_tokens",
    "max_completion_tokens",
    "seed",
    "n",
    "stream",
    "stream_options",
    "user",
    "top_p",
    "presence_penalty",
    "frequency_penalty",
    "logprobs",
    "top_logprobs",
    "stop",
    "response_format",
];

/// Parses and validates a request body.
pub fn parse(body: &[u8], api: Api, defaults: &Defaults) -> Result<ChatRequest, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("the request body is not valid JSON: {e}"), None))?;
    let Value::Object(fields) = value else {
        return Err(ApiError::invalid("the request body must be a JSON object", None));
    };
    let known = match api {
        Api::Reference => REFERENCE_FIELDS,
        Api::OpenAi => OPENAI_FIELDS,
    };
    if let Some(unknown) = fields.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(ApiError::invalid(
            format!("unknown field `{unknown}`; this endpoint takes {}", known.join(", ")),
            Some(unknown),
        ));
    }
    if api == Api::OpenAi {
        check_neutral(&fields)?;
    }
    let turns = turns(&fields, api)?;
    let temperature = number(&fields, "temperature")?.unwrap_or(defaults.temperature);
    if !(0.0..=MAX_TEMPERATURE).contains(&temperature) {
        return Err(ApiError::invalid(
            format!("temperature must be between 0 and {MAX_TEMPERATURE}, got {temperature}"),
            Some("temperature"),
        ));
    }
    let top_k = integer(&fields, "top_k")?.unwrap_or(defaults.top_k);
    if !(1..=MAX_TOP_K).contains(&top_k) {
        return Err(ApiError::invalid(format!("top_k must be between 1 and {MAX_TOP_K}, got {top_k}"), Some("top_k")));
    }
    let (max_field, max_tokens) = match (integer(&fields, "max_tokens")?, integer(&fields, "max_completion_tokens")?) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "give max_tokens or max_completion_tokens, not both",
                Some("max_completion_tokens"),
            ))
        }
        (Some(m), None) => ("max_tokens", m),
        (None, Some(m)) => ("max_completion_tokens", m),
        (None, None) => ("max_tokens", defaults.max_tokens as i64),
    };
    if !(1..=MAX_TOKENS_LIMIT).contains(&max_tokens) {
        return Err(ApiError::invalid(
            format!("{max_field} must be between 1 and {MAX_TOKENS_LIMIT}, got {max_tokens}"),
            Some(max_field),
        ));
    }
    let n = integer(&fields, "n")?.unwrap_or(1);
    if !(1..=MAX_CHOICES).contains(&n) {
        return Err(ApiError::invalid(format!("n must be between 1 and {MAX_CHOICES}, got {n}"), Some("n")));
    }
    let stream = boolean(&fields, "stream")?.unwrap_or(api == Api::Reference);
    let include_usage = match fields.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(Value::Object(options)) => {
            if let Some(k) = options.keys().find(|k| k.as_str() != "include_usage") {
                return Err(ApiError::invalid(
                    format!("unknown field `{k}` in stream_options (only include_usage)"),
                    Some(&format!("stream_options.{k}")),
                ));
            }
            boolean(options, "include_usage").map_err(|e| e.in_object("stream_options"))?.unwrap_or(false)
        }
        Some(_) => return Err(ApiError::invalid("stream_options must be an object", Some("stream_options"))),
    };
    if include_usage && !stream {
        return Err(ApiError::invalid("stream_options is only allowed with stream: true", Some("stream_options")));
    }
    let model = match fields.get("model") {
        None | Some(Value::Null) => None,
        Some(Value::String(m)) => Some(m.clone()),
        Some(_) => return Err(ApiError::invalid("model must be a string", Some("model"))),
    };
    Ok(ChatRequest {
        turns,
        temperature,
        top_k,
        max_tokens: max_tokens as usize,
        seed: integer(&fields, "seed")?,
        n: n as usize,
        stream,
        include_usage,
        model,
    })
}

/// OpenAI fields this model has no use for, accepted at the value that changes nothing.
fn check_neutral(fields: &Map<String, Value>) -> Result<(), ApiError> {
    let unsupported = |name: &str, what: &str| {
        Err(ApiError::invalid(format!("{name} is not supported by this server ({what})"), Some(name)))
    };
    if let Some(top_p) = number(fields, "top_p")? {
        if top_p != 1.0 {
            return unsupported("top_p", "only 1; use top_k");
        }
    }
    for penalty in ["presence_penalty", "frequency_penalty"] {
        if number(fields, penalty)?.is_some_and(|p| p != 0.0) {
            return unsupported(penalty, "only 0");
        }
    }
    if boolean(fields, "logprobs")? == Some(true) {
        return unsupported("logprobs", "only false");
    }
    if fields.get("top_logprobs").is_some_and(|v| !v.is_null()) {
        return unsupported("top_logprobs", "only null");
    }
    match fields.get("stop") {
        None | Some(Value::Null) => {}
        Some(Value::Array(stops)) if stops.is_empty() => {}
        Some(_) => return unsupported("stop", "generation ends at the model's <|assistant_end|>"),
    }
    match fields.get("response_format") {
        None | Some(Value::Null) => {}
        Some(Value::Object(format)) if format.get("type") == Some(&Value::String("text".into())) => {}
        Some(_) => return unsupported("response_format", r#"only {"type": "text"}"#),
    }
    match fields.get("user") {
        None | Some(Value::Null) | Some(Value::String(_)) => Ok(()),
        Some(_) => Err(ApiError::invalid("user must be a string", Some("user"))),
    }
}

/// The conversation: each message's role and text, system text merged into the next user message.
fn turns(fields: &Map<String, Value>, api: Api) -> Result<Vec<Turn>, ApiError> {
    let messages = match fields.get("messages") {
        Some(Value::Array(m)) => m,
        Some(_) => return Err(ApiError::invalid("messages must be a list", Some("messages"))),
        None => return Err(ApiError::invalid("messages is required", Some("messages"))),
    };
    if messages.is_empty() || messages.len() > MAX_MESSAGES {
        return Err(ApiError::invalid(
            format!("messages must hold 1 to {MAX_MESSAGES} messages, got {}", messages.len()),
            Some("messages"),
        ));
    }
    let mut turns = Vec::with_capacity(messages.len());
    let mut system: Option<(String, usize)> = None;
    let mut total_chars = 0;
    for (i, message) in messages.iter().enumerate() {
        let at = |field: &str| format!("messages[{i}].{field}");
        let Value::Object(message) = message else {
            return Err(ApiError::invalid(format!("messages[{i}] must be an object"), Some(&format!("messages[{i}]"))));
        };
        let allowed: &[&str] = match api {
            Api::Reference => &["role", "content"],
            Api::OpenAi => &["role", "content", "name"],
        };
        if let Some(unknown) = message.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(ApiError::invalid(format!("unknown field `{unknown}` in messages[{i}]"), Some(&at(unknown))));
        }
        let role = match message.get("role") {
            Some(Value::String(r)) => r.as_str(),
            Some(_) => return Err(ApiError::invalid(format!("{} must be a string", at("role")), Some(&at("role")))),
            None => return Err(ApiError::invalid(format!("{} is required", at("role")), Some(&at("role")))),
        };
        let content = content(message.get("content"), &at("content"), api)?;
        let chars = content.chars().count();
        if chars == 0 {
            return Err(ApiError::invalid(format!("{} must not be empty", at("content")), Some(&at("content"))));
        }
        if chars > MAX_MESSAGE_CHARS {
            return Err(ApiError::invalid(
                format!("{} is {chars} characters; the limit is {MAX_MESSAGE_CHARS}", at("content")),
                Some(&at("content")),
            ));
        }
        total_chars += chars;
        match (role, api) {
            ("user", _) => {
                let content = match system.take() {
                    Some((system, _)) => format!("{system}\n\n{content}"),
                    None => content,
                };
                turns.push(Turn { role: Role::User, content });
            }
            ("assistant", _) => {
                if let Some((_, at)) = &system {
                    return Err(ApiError::invalid(
                        format!("the system message messages[{at}] must be followed by a user message"),
                        Some(&format!("messages[{at}]")),
                    ));
                }
                turns.push(Turn { role: Role::Assistant, content });
            }
            ("system" | "developer", Api::OpenAi) => match &mut system {
                Some((text, _)) => {
                    text.push_str("\n\n");
                    text.push_str(&content);
                }
                None => system = Some((content, i)),
            },
            _ => {
                let allowed = match api {
                    Api::Reference => "user or assistant",
                    Api::OpenAi => "system, developer, user or assistant",
                };
                return Err(ApiError::invalid(
                    format!("{} must be {allowed}, got {role:?}", at("role")),
                    Some(&at("role")),
                ));
            }
        }
    }
    if total_chars > MAX_TOTAL_CHARS {
        return Err(ApiError::invalid(
            format!("the messages hold {total_chars} characters in all; the limit is {MAX_TOTAL_CHARS}"),
            Some("messages"),
        ));
    }
    if let Some((_, at)) = system {
        return Err(ApiError::invalid(
            format!("the system message messages[{at}] must be followed by a user message"),
            Some(&format!("messages[{at}]")),
        ));
    }
    Ok(turns)
}

/// A message's text: a string, or (OpenAI) a list of `{"type": "text", "text": ...}` parts.
fn content(value: Option<&Value>, at: &str, api: Api) -> Result<String, ApiError> {
    match (value, api) {
        (Some(Value::String(text)), _) => Ok(text.clone()),
        (Some(Value::Array(parts)), Api::OpenAi) => {
            let mut text = String::new();
            for (j, part) in parts.iter().enumerate() {
                let here = format!("{at}[{j}]");
                match part {
                    Value::Object(p) if p.get("type") == Some(&Value::String("text".into())) => match p.get("text") {
                        Some(Value::String(t)) => text.push_str(t),
                        _ => return Err(ApiError::invalid(format!("{here}.text must be a string"), Some(&here))),
                    },
                    _ => {
                        return Err(ApiError::invalid(
                            format!("{here}: only text parts ({{\"type\": \"text\", \"text\": ...}}) are supported"),
                            Some(&here),
                        ))
                    }
                }
            }
            Ok(text)
        }
        (None, _) => Err(ApiError::invalid(format!("{at} is required"), Some(at))),
        (Some(_), Api::Reference) => Err(ApiError::invalid(format!("{at} must be a string"), Some(at))),
        (Some(_), Api::OpenAi) => {
            Err(ApiError::invalid(format!("{at} must be a string or a list of text parts"), Some(at)))
        }
    }
}

fn number(fields: &Map<String, Value>, name: &str) -> Result<Option<f64>, ApiError> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(_) => Err(ApiError::invalid(format!("{name} must be a number"), Some(name))),
    }
}

fn integer(fields: &Map<String, Value>, name: &str) -> Result<Option<i64>, ApiError> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(i) => Ok(Some(i)),
            None => Err(ApiError::invalid(format!("{name} must be an integer, got {n}"), Some(name))),
        },
        Some(_) => Err(ApiError::invalid(format!("{name} must be an integer"), Some(name))),
    }
}

fn boolean(fields: &Map<String, Value>, name: &str) -> Result<Option<bool>, ApiError> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ApiError::invalid(format!("{name} must be true or false"), Some(name))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: Defaults = Defaults { temperature: 0.8, top_k: 50, max_tokens: 512 };

    fn reference(body: Value) -> Result<ChatRequest, ApiError> {
        parse(body.to_string().as_bytes(), Api::Reference, &DEFAULTS)
    }

    fn openai(body: Value) -> Result<ChatRequest, ApiError> {
        parse(body.to_string().as_bytes(), Api::OpenAi, &DEFAULTS)
    }

    fn param(result: Result<ChatRequest, ApiError>) -> String {
        result.unwrap_err().param.unwrap_or_default()
    }

    fn user(text: &str) -> Value {
        serde_json::json!({"role": "user", "content": text})
    }

    #[test]
    fn defaults_and_reference_fields() {
        let r = reference(serde_json::json!({"messages": [user("hi")]})).unwrap();
        assert_eq!((r.temperature, r.top_k, r.max_tokens, r.n, r.stream, r.seed), (0.8, 50, 512, 1, true, None));
        let r =
            reference(serde_json::json!({"messages": [user("hi"), {"role": "assistant", "content": "yo"}, user("x")],
            "temperature": 0, "top_k": 200, "max_tokens": 4096, "seed": 3}))
            .unwrap();
        assert_eq!(r.turns.len(), 3);
        assert_eq!(r.turns[1], Turn { role: Role::Assistant, content: "yo".into() });
        assert_eq!((r.temperature, r.top_k, r.max_tokens, r.seed), (0.0, 200, 4096, Some(3)));
    }

    #[test]
    fn every_limit_names_its_field() {
        let long = "é".repeat(MAX_MESSAGE_CHARS + 1);
        let cases = [
            (serde_json::json!({"messages": []}), "messages"),
            (serde_json::json!({"messages": vec![user("a"); MAX_MESSAGES + 1]}), "messages"),
            (serde_json::json!({"messages": [user("a"), user("")]}), "messages[1].content"),
            (serde_json::json!({"messages": [user(&long)]}), "messages[0].content"),
            (serde_json::json!({"messages": vec![user(&"a".repeat(8_000)); 5]}), "messages"),
            (serde_json::json!({"messages": [{"role": "system", "content": "s"}]}), "messages[0].role"),
            (serde_json::json!({"messages": [{"role": "user"}]}), "messages[0].content"),
            (serde_json::json!({"messages": [{"role": "user", "content": "a", "x": 1}]}), "messages[0].x"),
            (serde_json::json!({"messages": [user("a")], "temperature": 2.5}), "temperature"),
            (serde_json::json!({"messages": [user("a")], "temperature": "hot"}), "temperature"),
            (serde_json::json!({"messages": [user("a")], "top_k": 0}), "top_k"),
            (serde_json::json!({"messages": [user("a")], "top_k": 201}), "top_k"),
            (serde_json::json!({"messages": [user("a")], "max_tokens": 0}), "max_tokens"),
            (serde_json::json!({"messages": [user("a")], "max_tokens": 4097}), "max_tokens"),
            (serde_json::json!({"messages": [user("a")], "max_tokens": 1.5}), "max_tokens"),
            (serde_json::json!({"messages": [user("a")], "stream": false}), "stream"),
        ];
        for (body, field) in cases {
            assert_eq!(param(reference(body.clone())), field, "{body}");
        }
        // 8,000 characters (not bytes) is within the limit.
        assert!(reference(serde_json::json!({"messages": [user(&"é".repeat(8_000))]})).is_ok());
        let e = reference(serde_json::json!({"messages": [user("a")], "temprature": 1})).unwrap_err();
        assert!(e.message.contains("unknown field `temprature`"), "{}", e.message);
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
        assert!(parse(b"{\"messages\": [", Api::Reference, &DEFAULTS).unwrap_err().message.contains("not valid JSON"));
        assert!(parse(b"[1]", Api::Reference, &DEFAULTS).is_err());
    }

    #[test]
    fn openai_requests() {
        let r = openai(serde_json::json!({"model": "m", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]}],
            "stream": true, "stream_options": {"include_usage": true}, "n": 2, "max_completion_tokens": 7,
            "top_p": 1, "presence_penalty": 0, "stop": null, "user": "u"}))
        .unwrap();
        assert_eq!(r.turns, vec![Turn { role: Role::User, content: "Be brief.\n\nHi there".into() }]);
        assert_eq!((r.n, r.max_tokens, r.stream, r.include_usage), (2, 7, true, true));
        assert_eq!(r.model.as_deref(), Some("m"));
        assert!(!openai(serde_json::json!({"messages": [user("a")]})).unwrap().stream);
        let cases = [
            (serde_json::json!({"messages": [user("a")], "top_p": 0.9}), "top_p"),
            (serde_json::json!({"messages": [user("a")], "stop": ["\n"]}), "stop"),
            (serde_json::json!({"messages": [user("a")], "n": 9}), "n"),
            (serde_json::json!({"messages": [user("a")], "tools": []}), "tools"),
            (serde_json::json!({"messages": [user("a")], "stream_options": {"include_usage": true}}), "stream_options"),
            (
                serde_json::json!({"messages": [user("a")], "stream": true, "stream_options": {"x": 1}}),
                "stream_options.x",
            ),
            (
                serde_json::json!({"messages": [user("a")], "max_tokens": 5, "max_completion_tokens": 5}),
                "max_completion_tokens",
            ),
            (serde_json::json!({"messages": [{"role": "tool", "content": "a"}]}), "messages[0].role"),
            (serde_json::json!({"messages": [{"role": "system", "content": "a"}]}), "messages[0]"),
            (
                serde_json::json!({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
                "messages[0].content[0]",
            ),
        ];
        for (body, field) in cases {
            assert_eq!(param(openai(body.clone())), field, "{body}");
        }
    }
}
