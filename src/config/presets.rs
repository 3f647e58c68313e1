//! The run presets shipped inside the binary (manifests/runs/*.toml), so the container and a copied
//! binary need no repository checkout. `--preset` also accepts a path to a TOML file of the same shape.
use std::path::Path;

use super::ConfigError;

/// (name, TOML text) of every built-in preset, in the order `nanochat config presets` lists them.
pub const BUILTIN_PRESETS: &[(&str, &str)] = &[
    ("smoke", include_str!("../../manifests/runs/smoke.toml")),
    ("d20", include_str!("../../manifests/runs/d20.toml")),
    ("d26", include_str!("../../manifests/runs/d26.toml")),
    ("d32", include_str!("../../manifests/runs/d32.toml")),
    ("gpt2", include_str!("../../manifests/runs/gpt2.toml")),
    ("gpt2-smoke", include_str!("../../manifests/runs/gpt2-smoke.toml")),
];

pub fn builtin_names() -> Vec<&'static str> {
    BUILTIN_PRESETS.iter().map(|(name, _)| *name).collect()
}

/// The TOML text of a preset given by built-in name or by file path.
pub fn preset_text(name_or_path: &str) -> Result<String, ConfigError> {
    if let Some((_, text)) = BUILTIN_PRESETS.iter().find(|(name, _)| *name == name_or_path) {
        return Ok((*text).to_string());
    }
    let path = Path::new(name_or_path);
    if name_or_path.ends_with(".toml") || path.is_file() {
        return std::fs::read_to_string(path)
            .map_err(|source| ConfigError::ReadFile { path: path.to_path_buf(), source });
    }
    Err(ConfigError::UnknownPreset { name: name_or_path.to_string(), available: builtin_names().join(", ") })
}
