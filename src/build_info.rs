//! Facts about this build, recorded by build.rs, for `--version`, `doctor` and the report header.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const GIT_COMMIT: &str = env!("NANOCHAT_BUILD_COMMIT");
pub const RUSTC: &str = env!("NANOCHAT_BUILD_RUSTC");
pub const LIBTORCH: &str = env!("NANOCHAT_BUILD_LIBTORCH");

/// One line for `nanochat --version`.
pub fn version_line() -> String {
    format!("{VERSION} (commit {GIT_COMMIT}, libtorch {LIBTORCH}, {RUSTC})")
}
