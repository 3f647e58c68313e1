//! `--set section.key=value` overrides applied to a preset's TOML tree before it is typed.
//! The key must already exist in the preset and the value must have the same TOML type
//! (an integer is accepted where a float is expected), so typos and wrong types fail loudly.
use toml::{Table, Value};

use super::ConfigError;

pub fn apply_override(root: &mut Table, assignment: &str) -> Result<(), ConfigError> {
    let (key, raw) =
        assignment.split_once('=').ok_or_else(|| ConfigError::MalformedOverride { given: assignment.to_string() })?;
    let key = key.trim();
    let slot = lookup_mut(root, key)?;
    *slot = typed_value(key, slot, raw.trim())?;
    Ok(())
}

fn lookup_mut<'a>(root: &'a mut Table, key: &str) -> Result<&'a mut Value, ConfigError> {
    let mut parts = key.split('.');
    let first = parts.next().unwrap_or_default();
    let unknown = |known: Vec<String>| ConfigError::UnknownKey { key: key.to_string(), known: known.join(", ") };
    let known_keys = |t: &Table| t.keys().cloned().collect::<Vec<_>>();
    let top_known = known_keys(root);
    let mut current = root.get_mut(first).ok_or_else(|| unknown(top_known))?;
    for part in parts {
        let table = match current {
            Value::Table(t) => t,
            _ => return Err(unknown(Vec::new())),
        };
        let known = known_keys(table);
        current = table.get_mut(part).ok_or_else(|| unknown(known))?;
    }
    if current.is_table() {
        return Err(ConfigError::UnknownKey { key: key.to_string(), known: "a key inside this section".into() });
    }
    Ok(current)
}

/// Parses `raw` as a TOML value of the same type as `old`; bare words are strings where a string is expected.
fn typed_value(key: &str, old: &Value, raw: &str) -> Result<Value, ConfigError> {
    let parsed = toml::from_str::<Table>(&format!("v = {raw}")).ok().and_then(|mut t| t.remove("v"));
    let new = match (old, parsed) {
        (Value::String(_), Some(Value::String(s))) => Value::String(s),
        (Value::String(_), _) => Value::String(raw.to_string()),
        (Value::Float(_), Some(Value::Integer(i))) => Value::Float(i as f64),
        (old, Some(new)) if std::mem::discriminant(old) == std::mem::discriminant(&new) => new,
        (old, _) => {
            return Err(ConfigError::WrongType {
                key: key.to_string(),
                expected: old.type_str().to_string(),
                given: raw.to_string(),
            })
        }
    };
    Ok(new)
}
