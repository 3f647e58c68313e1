//! Build script: links libtorch_cuda into every artifact (so the binary is CUDA-capable even when built
//! on a machine without a GPU; tch's own link args do not reach dependents, tch-rs #980), sets an rpath
//! to the torch lib dir so the binary runs without LD_LIBRARY_PATH, and records build facts
//! (git commit, rustc, libtorch version) for `--version` and the report header, and embeds the smoke
//! stand-ins of the chat datasets (manifests/data/chat_smoke/) and of the CORE eval bundle
//! (manifests/data/core_smoke/), each listed in its SOURCES.toml, so the binary alone can serve them
//! (src/download/chat_data.rs, src/download/eval_bundle.rs).
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() -> anyhow::Result<()> {
    let torch_lib = PathBuf::from(
        std::env::var("DEP_TCH_LIBTORCH_LIB")
            .map_err(|_| anyhow::anyhow!("torch-sys did not report DEP_TCH_LIBTORCH_LIB; build with `make build`"))?,
    );
    compile_shims(&torch_lib)?;
    link_libtorch_cuda(&torch_lib);
    emit_build_facts(&torch_lib);
    emit_bloat()?;
    embed_smoke_stand_ins()?;
    println!("cargo:rerun-if-changed=build.rs");
    Ok(())
}

/// The C++ shims: c10d (src/dist/c10d_shim.cpp), the fused AdamW kernel (src/optim/fused_adamw.cpp),
/// the model's fused pointwise autograd functions (src/model/fused_ops.cpp), the fp8 matmul
/// (src/model/fp8.cpp), the CUDA device probe (src/hw/cuda_device.cpp), the operator counter
/// (src/op_count.cpp) and the `.pt` writer (src/checkpoint/torch_pt.cpp), all with one error
/// convention (src/shim_guard.h). Gloo headers come from src/dist/vendor/gloo (Debian's libgloo-dev, see its README; NANOCHAT_GLOO_INCLUDE overrides), CUDA and NCCL
/// headers from the pip wheels next to torch (DESIGN.md lists the flags).
fn compile_shims(torch_lib: &Path) -> anyhow::Result<()> {
    let torch = torch_lib.parent().ok_or_else(|| anyhow::anyhow!("torch lib dir has no parent"))?;
    let site = torch.parent().ok_or_else(|| anyhow::anyhow!("torch dir has no parent"))?;
    let gloo_include = match std::env::var_os("NANOCHAT_GLOO_INCLUDE") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("src/dist/vendor/gloo/include"),
    };
    println!("cargo:rerun-if-env-changed=NANOCHAT_GLOO_INCLUDE");
    if !gloo_include.join("gloo/context.h").exists() {
        anyhow::bail!(
            "gloo headers are missing under {} (no gloo/context.h): a checkout has them in \
             src/dist/vendor/gloo/include, which NANOCHAT_GLOO_INCLUDE (when set) replaces",
            gloo_include.display()
        );
    }
    let cuda_include = site.join("nvidia/cu13/include");
    if !cuda_include.join("cuda_runtime_api.h").exists() {
        anyhow::bail!("CUDA headers missing under {}: run `make setup`", cuda_include.display());
    }
    cc::Build::new()
        .cpp(true)
        .file("src/dist/c10d_shim.cpp")
        .file("src/optim/fused_adamw.cpp")
        .file("src/model/fused_ops.cpp")
        .file("src/model/fp8.cpp")
        .file("src/hw/cuda_device.cpp")
        .file("src/op_count.cpp")
        .file("src/checkpoint/torch_pt.cpp")
        .std("c++17")
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .define("GLOG_USE_GLOG_EXPORT", None)
        .define("USE_C10D_GLOO", None)
        .define("USE_C10D_NCCL", None)
        .include(torch.join("include"))
        .include(torch.join("include/torch/csrc/api/include"))
        .include(&cuda_include)
        .include(site.join("nvidia/nccl/include"))
        .include(&gloo_include)
        .flag("-w")
        .compile("nanochat_c10d");
    println!("cargo:rerun-if-changed=src/dist/c10d_shim.cpp");
    println!("cargo:rerun-if-changed=src/optim/fused_adamw.cpp");
    println!("cargo:rerun-if-changed=src/model/fused_ops.cpp");
    println!("cargo:rerun-if-changed=src/model/fp8.cpp");
    println!("cargo:rerun-if-changed=src/hw/cuda_device.cpp");
    println!("cargo:rerun-if-changed=src/op_count.cpp");
    println!("cargo:rerun-if-changed=src/checkpoint/torch_pt.cpp");
    println!("cargo:rerun-if-changed=src/shim_guard.h");
    println!("cargo:rerun-if-changed={}", gloo_include.join("gloo").display());
    // The shim's own dependencies, after it on the link line.
    for lib in ["torch_cuda", "torch_cpu", "c10_cuda", "c10"] {
        println!("cargo:rustc-link-lib=dylib={lib}");
    }
    Ok(())
}

/// `--no-as-needed` keeps libtorch_cuda.so in DT_NEEDED although no symbol of it is referenced directly:
/// its static initialisers register the CUDA backend with the dispatcher.
fn link_libtorch_cuda(torch_lib: &Path) {
    println!("cargo:rustc-link-search=native={}", torch_lib.display());
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    println!("cargo:rustc-link-arg=-ltorch_cuda");
    println!("cargo:rustc-link-arg=-ltorch");
    println!("cargo:rustc-link-arg=-Wl,--as-needed");
    // The venv's lib dir for local builds; $ORIGIN/../lib/torch for the container image layout.
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", torch_lib.display());
    println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN/../lib/torch");
}

fn emit_build_facts(torch_lib: &Path) {
    let commit = std::env::var("NANOCHAT_GIT_COMMIT").ok().or_else(git_commit).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=NANOCHAT_BUILD_COMMIT={commit}");
    println!("cargo:rerun-if-env-changed=NANOCHAT_GIT_COMMIT");
    for git_file in [".git/HEAD", ".git/refs/heads/main"] {
        if Path::new(git_file).exists() {
            println!("cargo:rerun-if-changed={git_file}");
        }
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = command_output(Command::new(rustc).arg("--version")).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=NANOCHAT_BUILD_RUSTC={rustc_version}");
    let torch_version = torch_version(torch_lib).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=NANOCHAT_BUILD_LIBTORCH={torch_version}");
    println!("cargo:rustc-env=NANOCHAT_BUILD_TORCH_LIB={}", torch_lib.display());
}

/// The report's "Bloat" figures (as the reference's report): characters, lines and files of this
/// build's sources (src/, build.rs, Cargo.toml) and its dependencies (packages in Cargo.lock other than
/// itself), as `NANOCHAT_BLOAT=chars,lines,files,dependencies`. src/dist/vendor/ is left out: those are
/// other projects' files (the gloo headers), not lines of ours. Counted when build.rs runs, which is
/// on every new commit (the rerun triggers of `emit_build_facts`) and in every clean build.
fn emit_bloat() -> anyhow::Result<()> {
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.ends_with("src/dist/vendor") {
                continue;
            } else if path.is_dir() {
                walk(&path, files)?;
            } else {
                files.push(path);
            }
        }
        Ok(())
    }
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let mut files = vec![root.join("build.rs"), root.join("Cargo.toml")];
    walk(&root.join("src"), &mut files)?;
    let (mut chars, mut lines) = (0usize, 0usize);
    for file in &files {
        let text = String::from_utf8_lossy(&std::fs::read(file)?).into_owned();
        chars += text.chars().count();
        lines += text.lines().count();
    }
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap_or_default();
    let dependencies = lock.lines().filter(|l| l.trim() == "[[package]]").count().saturating_sub(1);
    println!("cargo:rustc-env=NANOCHAT_BLOAT={chars},{lines},{},{dependencies}", files.len());
    println!("cargo:rerun-if-changed=Cargo.lock");
    Ok(())
}

/// The chat datasets' stand-ins (manifests/data/chat_smoke/) and the CORE eval bundle's
/// (manifests/data/core_smoke/), each listed in its SOURCES.toml.
fn embed_smoke_stand_ins() -> anyhow::Result<()> {
    embed_listed_files("chat_smoke", "CHAT_SMOKE")?;
    embed_listed_files("core_smoke", "CORE_SMOKE")
}

/// Writes `$OUT_DIR/<dir>_files.rs`: `<PREFIX>_SOURCES`, the text of manifests/data/<dir>/SOURCES.toml
/// ("" when there is none), and `<PREFIX>_FILES`, every file it lists (`[[file]]` tables with a
/// `path` under that directory) as (path, `include_bytes!`), in its order. Whether the bytes match
/// the recorded sha256s is checked by the tests and, at run time, by the downloader.
fn embed_listed_files(dir: &str, prefix: &str) -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest_dir.join("manifests/data").join(dir);
    println!("cargo:rerun-if-changed=manifests/data/{dir}");
    let sources = root.join("SOURCES.toml");
    let mut code = format!("/// manifests/data/{dir}/SOURCES.toml.\n");
    let mut paths = Vec::new();
    if sources.is_file() {
        code += &format!("pub const {prefix}_SOURCES: &str = include_str!({:?});\n", sources.display().to_string());
        let table: toml::Table = std::fs::read_to_string(&sources)?.parse()?;
        let files = table.get("file").and_then(|f| f.as_array()).map(Vec::as_slice).unwrap_or_default();
        for file in files {
            let path = file.get("path").and_then(|p| p.as_str());
            let path = path.ok_or_else(|| anyhow::anyhow!("{}: a [[file]] without `path`", sources.display()))?;
            if path.split('/').any(|part| part.is_empty() || part.starts_with('.')) {
                anyhow::bail!("{}: {path:?} is not a plain relative path", sources.display());
            }
            if !root.join(path).is_file() {
                anyhow::bail!("{}: lists {path}, which is not there", sources.display());
            }
            paths.push(path.to_string());
        }
    } else {
        code += &format!("pub const {prefix}_SOURCES: &str = \"\";\n");
    }
    code += &format!("/// Every file SOURCES.toml lists: (path under manifests/data/{dir}/, bytes).\n");
    code += &format!("pub const {prefix}_FILES: &[(&str, &[u8])] = &[\n");
    for path in &paths {
        code += &format!("    ({path:?}, include_bytes!({:?})),\n", root.join(path).display().to_string());
    }
    code += "];\n";
    std::fs::write(PathBuf::from(std::env::var("OUT_DIR")?).join(format!("{dir}_files.rs")), code)?;
    Ok(())
}

fn git_commit() -> Option<String> {
    let commit = command_output(Command::new("git").args(["rev-parse", "--short=12", "HEAD"]))?;
    let dirty = command_output(Command::new("git").args(["status", "--porcelain", "--untracked-files=no"]))
        .map(|s| !s.is_empty())
        .unwrap_or(false);
    Some(if dirty { format!("{commit}-dirty") } else { commit })
}

/// The wheel's torch/version.py holds `__version__ = '2.11.0+cu130'`.
fn torch_version(torch_lib: &Path) -> Option<String> {
    let text = std::fs::read_to_string(torch_lib.parent()?.join("version.py")).ok()?;
    let line = text.lines().find(|l| l.starts_with("__version__"))?;
    Some(line.split(['\'', '"']).nth(1)?.to_string())
}

fn command_output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}
