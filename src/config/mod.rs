//! Run configuration: a preset (built-in or a TOML file) plus `--set` overrides and `--seed`,
//! resolved into the typed [`RunConfig`] that every stage reads and writes beside its outputs.
mod overrides;
mod presets;
mod schema;

use std::path::{Path, PathBuf};

pub use presets::{builtin_names, preset_text, BUILTIN_PRESETS};
pub use schema::*;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown preset `{name}`; built-in presets: {available} (or give a path to a .toml file)")]
    UnknownPreset { name: String, available: String },
    #[error("cannot read preset file {path}: {source}")]
    ReadFile { path: PathBuf, source: std::io::Error },
    #[error("preset `{preset}` is not valid: {message}")]
    Invalid { preset: String, message: String },
    #[error("override `{given}` is not of the form section.key=value")]
    MalformedOverride { given: String },
    #[error("unknown configuration key `{key}` (known here: {known})")]
    UnknownKey { key: String, known: String },
    #[error("configuration key `{key}` takes a {expected}, got `{given}`")]
    WrongType { key: String, expected: String, given: String },
    #[error("cannot write the resolved configuration to {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// Loads `preset` (name or path), applies `overrides` in order, then `seed` if given.
pub fn resolve(preset: &str, overrides: &[String], seed: Option<u64>) -> Result<RunConfig, ConfigError> {
    let text = preset_text(preset)?;
    let mut tree: toml::Table = toml::from_str(&text)
        .map_err(|e| ConfigError::Invalid { preset: preset.to_string(), message: e.to_string() })?;
    for assignment in overrides {
        overrides::apply_override(&mut tree, assignment)?;
    }
    let mut config: RunConfig = toml::Value::Table(tree)
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::Invalid { preset: preset.to_string(), message: e.to_string() })?;
    if let Some(seed) = seed {
        config.run.seed = seed;
    }
    Ok(config)
}

impl RunConfig {
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot serialise configuration: {e}\n"))
    }

    /// Writes `config.toml` into `dir` (the resolved configuration lives beside every stage's outputs).
    pub fn write_beside(&self, dir: &Path) -> Result<PathBuf, ConfigError> {
        let path = dir.join("config.toml");
        crate::fsutil::write_atomic(&path, self.to_toml().as_bytes())
            .map_err(|source| ConfigError::Write { path: path.clone(), source })?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_preset_parses_and_names_itself() {
        for name in builtin_names() {
            let config = resolve(name, &[], None).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(config.run.name, name);
        }
    }

    #[test]
    fn d20_holds_the_reference_values() {
        let c = resolve("d20", &[], None).unwrap();
        assert_eq!(c.tok_train.vocab_size, 65_536);
        assert_eq!(c.base_train.depth, 20);
        assert_eq!(c.base_train.total_batch_size, 524_288);
        assert_eq!((c.base_train.adam_beta1, c.base_train.adam_beta2, c.base_train.adam_eps), (0.8, 0.95, 1e-10));
        assert_eq!(c.base_train.warmdown_ratio, 0.2);
        assert_eq!(c.chat_sft.init_lr_frac, 0.02);
        assert_eq!(c.chat_rl.init_lr_frac, 0.05);
        assert_eq!(c.data.train_shards, 240);
        assert_eq!(c.run.seed, 42);
    }

    #[test]
    fn overrides_change_values_and_keep_types() {
        let sets = ["base_train.depth=4".to_string(), "base_train.matrix_lr=1".into(), "run.description=hello".into()];
        let c = resolve("smoke", &sets, Some(7)).unwrap();
        assert_eq!(c.base_train.depth, 4);
        assert_eq!(c.base_train.matrix_lr, 1.0);
        assert_eq!(c.run.description, "hello");
        assert_eq!(c.run.seed, 7);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = resolve("smoke", &["base_train.dpeth=4".into()], None).unwrap_err();
        assert!(matches!(&err, ConfigError::UnknownKey { key, .. } if key == "base_train.dpeth"), "{err}");
        assert!(err.to_string().contains("depth"), "lists the known keys: {err}");
        let err = resolve("smoke", &["nosuch.depth=4".into()], None).unwrap_err();
        assert!(matches!(&err, ConfigError::UnknownKey { key, .. } if key == "nosuch.depth"), "{err}");
        let err = resolve("smoke", &["base_train=4".into()], None).unwrap_err();
        assert!(matches!(err, ConfigError::UnknownKey { .. }), "a whole section is not a key");
    }

    #[test]
    fn wrong_type_is_named() {
        let err = resolve("smoke", &["base_train.depth=deep".into()], None).unwrap_err();
        assert!(
            matches!(&err, ConfigError::WrongType { key, expected, .. } if key == "base_train.depth" && expected == "integer")
        );
        let err = resolve("smoke", &["chat_rl.enabled=1".into()], None).unwrap_err();
        assert!(matches!(err, ConfigError::WrongType { .. }));
        let err = resolve("smoke", &["base_train.depth=-3".into()], None).unwrap_err();
        assert!(matches!(err, ConfigError::Invalid { .. }), "a negative depth does not fit u32: {err}");
    }

    #[test]
    fn malformed_override_and_unknown_preset() {
        assert!(matches!(resolve("smoke", &["depth".into()], None), Err(ConfigError::MalformedOverride { .. })));
        let err = resolve("d99", &[], None).unwrap_err();
        assert!(err.to_string().contains("smoke, d20, d26, d32"), "{err}");
    }

    #[test]
    fn preset_file_round_trips_and_missing_keys_fail() {
        let dir = tempfile::tempdir().unwrap();
        let c = resolve("d26", &["base_train.depth=27".into()], None).unwrap();
        let path = c.write_beside(dir.path()).unwrap();
        let back = resolve(path.to_str().unwrap(), &[], None).unwrap();
        assert_eq!(back, c);
        let partial = dir.path().join("partial.toml");
        std::fs::write(&partial, "[run]\nname='x'\n").unwrap();
        let err = resolve(partial.to_str().unwrap(), &[], None).unwrap_err();
        assert!(matches!(err, ConfigError::Invalid { .. }), "{err}");
    }
}
