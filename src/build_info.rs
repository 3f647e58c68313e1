//! Facts about this build, recorded by build.rs, for `--version`, `doctor` and the report header.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const GIT_COMMIT: &str = env!("NANOCHAT_BUILD_COMMIT");
pub const RUSTC: &str = env!("NANOCHAT_BUILD_RUSTC");
pub const LIBTORCH: &str = env!("NANOCHAT_BUILD_LIBTORCH");
/// "chars,lines,files,dependencies" of this build's sources, counted by build.rs.
const BLOAT: &str = env!("NANOCHAT_BLOAT");

/// The size of this build's sources and dependencies (the report's "Bloat" section).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Bloat {
    pub characters: u64,
    pub lines: u64,
    pub files: u64,
    /// Characters / 4, the reference's approximation.
    pub tokens_approx: u64,
    /// Packages in Cargo.lock besides nanochat itself.
    pub dependencies: u64,
}

pub fn bloat() -> Bloat {
    let n: Vec<u64> = BLOAT.split(',').map(|v| v.parse().unwrap_or(0)).collect();
    let get = |i: usize| n.get(i).copied().unwrap_or(0);
    Bloat { characters: get(0), lines: get(1), files: get(2), tokens_approx: get(0) / 4, dependencies: get(3) }
}

/// One line for `nanochat --version`.
pub fn version_line() -> String {
    format!("{VERSION} (commit {GIT_COMMIT}, libtorch {LIBTORCH}, {RUSTC})")
}
