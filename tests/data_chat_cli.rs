//! `nanochat data download --chat | verify` for the chat stages' HuggingFace datasets (NANOCHAT.md
//! §5.2) through the binary, against a local server playing the Hub (revision API, paged tree API,
//! resolve URLs; `HF_ENDPOINT` points at it), a plain mirror served by `LocalMirror`, and the smoke
//! stand-ins compiled into the binary; never the internet. Covers: every dataset file downloaded at the
//! resolved commit and recorded; a second run that asks nothing and downloads nothing; `main` moving on
//! without changing the recorded commit; corruption repaired by `data verify`; an interrupted download
//! resumed; the errors that say what to do; the mirror layout; the stand-ins arriving byte-identical.
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

#[path = "support/fault_server.rs"]
mod fault_server;
use fault_server::{Fault, FaultServer};
use nanochat::download::bundled_manifests::bundled_chat_datasets;
use nanochat::download::{LocalMirror, Sha256Digest};
use serde_json::json;

const UNREACHABLE: &str = "http://127.0.0.1:9";

/// A dataset file the fake Hub serves and the manifest wants.
#[derive(Clone)]
struct HubFile {
    repo: String,
    path: String,
    bytes: Vec<u8>,
}

impl HubFile {
    fn local(&self, base: &Path) -> std::path::PathBuf {
        base.join("data/hf").join(&self.repo).join(&self.path)
    }
}

fn file_bytes(repo: &str, path: &str, tag: &str) -> Vec<u8> {
    (0..800).map(|i| format!("{tag} {repo} {path} row {i}\n")).collect::<String>().into_bytes()
}

fn lfs_entry(path: &str, bytes: &[u8]) -> serde_json::Value {
    json!({
        "type": "file",
        "oid": "0123456789abcdef0123456789abcdef01234567",
        "size": 134,
        "path": path,
        "lfs": {"oid": Sha256Digest::of_bytes(bytes).as_hex(), "size": bytes.len(), "pointerSize": 134},
    })
}

/// Serves every dataset of manifests/data/chat_datasets.toml at `commit` like the Hub does: `main` →
/// `commit`, the tree listing of every directory a pattern names (the wanted files in LFS, plus a
/// README kept in git, a parquet file no pattern wants and a subdirectory; the listing comes in two
/// pages), and the resolve URLs. Returns the wanted files.
fn serve_hub(server: &FaultServer, commit: &str, tag: &str) -> Vec<HubFile> {
    let mut wanted = Vec::new();
    for dataset in &bundled_chat_datasets().unwrap().datasets {
        let repo = dataset.repo.as_str();
        let revision = json!({"id": repo, "sha": commit}).to_string();
        server.serve(&format!("/api/datasets/{repo}/revision/main"), revision.into_bytes());
        let mut by_dir: BTreeMap<String, Vec<HubFile>> = BTreeMap::new();
        for pattern in &dataset.files {
            let (dir, glob) = pattern.rsplit_once('/').unwrap();
            let path = format!("{dir}/{}", glob.replace('*', "00000-of-00001"));
            let file = HubFile { repo: repo.into(), path: path.clone(), bytes: file_bytes(repo, &path, tag) };
            by_dir.entry(dir.to_string()).or_default().push(file);
        }
        for (dir, files) in by_dir {
            let mut listing: Vec<serde_json::Value> = files.iter().map(|f| lfs_entry(&f.path, &f.bytes)).collect();
            let other = format!("{dir}/other-00000-of-00001.parquet");
            let other_bytes = file_bytes(repo, &other, tag);
            listing.push(lfs_entry(&other, &other_bytes));
            listing
                .push(json!({"type": "file", "oid": "1".repeat(40), "size": 12, "path": format!("{dir}/README.md")}));
            listing
                .push(json!({"type": "directory", "oid": "2".repeat(40), "size": 0, "path": format!("{dir}/nested")}));
            for file in &files {
                server.serve(&format!("/datasets/{repo}/resolve/{commit}/{}", file.path), file.bytes.clone());
            }
            server.serve(&format!("/datasets/{repo}/resolve/{commit}/{other}"), other_bytes);
            // Two pages, linked like the Hub does.
            let tree = format!("/api/datasets/{repo}/tree/{commit}/{dir}");
            let second = format!("{tree}?cursor=page2");
            let half = listing.len() / 2;
            let link = format!("<{}>; rel=\"next\"", server.url(&second));
            server.serve_with_headers(
                &tree,
                serde_json::Value::Array(listing[..half].to_vec()).to_string().into_bytes(),
                vec![("Link".into(), link)],
            );
            server.serve(&second, serde_json::Value::Array(listing[half..].to_vec()).to_string().into_bytes());
            wanted.extend(files);
        }
    }
    wanted
}

/// The chat extras put in place by hand (their real URLs are not on any test server): first use
/// records them in the ledger.
fn seed_extras(base: &Path) {
    let dir = base.join("data/chat-data");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("identity_conversations.jsonl"), "[{\"role\":\"user\",\"content\":\"hi\"}]\n").unwrap();
    std::fs::write(dir.join("words_alpha.txt"), "a\naa\naal\n").unwrap();
}

/// `nanochat` on a FineWeb-style preset (not the smoke stand-ins) with `HF_ENDPOINT`.
fn nanochat(base: &Path, endpoint: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nanochat"))
        .arg("--base-dir")
        .arg(base)
        .args(["--preset", "smoke", "--set", "data.manifest=fineweb-edu-100b"])
        .args(args)
        .env("HF_ENDPOINT", endpoint)
        .env_remove("NANOCHAT_OUTPUT_CAPTURED")
        .env_remove("NANOCHAT_PRESET")
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn record(base: &Path, repo: &str) -> serde_json::Value {
    let path = base.join("data/hf").join(repo).join("revision.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn report_section(base: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(base.join("report/data.json")).unwrap()).unwrap()
}

fn report_value(section: &serde_json::Value, key: &str) -> serde_json::Value {
    section["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e.get("key").and_then(|k| k.as_str()) == Some(key))
        .map(|e| e["value"].clone())
        .unwrap_or(serde_json::Value::Null)
}

fn report_markdown(section: &serde_json::Value) -> String {
    let entries = section["entries"].as_array().unwrap();
    entries.iter().filter_map(|e| e.get("text").and_then(|t| t.as_str())).collect::<Vec<_>>().join("\n")
}

fn assert_all_in_place(base: &Path, files: &[HubFile]) {
    for file in files {
        let got = std::fs::read(file.local(base)).unwrap_or_else(|e| panic!("{}/{}: {e}", file.repo, file.path));
        assert!(got == file.bytes, "{}/{} differs", file.repo, file.path);
    }
}

fn resolve_path(file: &HubFile, commit: &str) -> String {
    format!("/datasets/{}/resolve/{commit}/{}", file.repo, file.path)
}

#[test]
fn chat_datasets_are_resolved_once_recorded_and_downloaded_at_that_commit() {
    let server = FaultServer::start().unwrap();
    let (first, moved) = ("a".repeat(40), "b".repeat(40));
    let files = serve_hub(&server, &first, "first");
    let base = tempfile::tempdir().unwrap();
    seed_extras(base.path());
    let hub = server.url("");

    let out = nanochat(base.path(), &hub, &["data", "download", "--chat"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_all_in_place(base.path(), &files);
    assert_eq!(files.len(), 15, "every pattern of chat_datasets.toml");
    let repos: Vec<String> = bundled_chat_datasets().unwrap().datasets.iter().map(|d| d.repo.clone()).collect();
    for repo in &repos {
        let record = record(base.path(), repo);
        assert_eq!(record["commit"], first.as_str(), "{repo}");
        assert_eq!(record["resolved_from"], "main");
        let listed: Vec<&str> =
            record["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
        let expected: Vec<&str> = files.iter().filter(|f| &f.repo == repo).map(|f| f.path.as_str()).collect();
        let mut expected = expected;
        expected.sort();
        assert_eq!(listed, expected, "{repo}: exactly the wanted files, sorted");
        for file in record["files"].as_array().unwrap() {
            let hub_file = files.iter().find(|f| &f.repo == repo && f.path == file["path"]).unwrap();
            assert_eq!(file["sha256"], Sha256Digest::of_bytes(&hub_file.bytes).as_hex());
            assert_eq!(file["size"], hub_file.bytes.len());
        }
        assert_eq!(server.requests_for(&format!("/api/datasets/{repo}/revision/main")).len(), 1);
    }
    // Files no pattern wants are neither fetched nor present.
    assert!(server.requests().iter().all(|r| !r.path.contains("other-") && !r.path.ends_with("README.md")));
    assert!(!base.path().join("data/hf/cais/mmlu/all/other-00000-of-00001.parquet").exists());

    // The Data section names every dataset's commit and that it is not pinned.
    let section = report_section(base.path());
    let datasets = report_value(&section, "chat_datasets");
    assert_eq!(datasets.as_array().unwrap().len(), repos.len());
    for dataset in datasets.as_array().unwrap() {
        assert_eq!(dataset["commit"], first.as_str());
        assert_eq!(dataset["pinned"], false);
    }
    let markdown = report_markdown(&section);
    assert!(
        markdown.contains(&format!("allenai/ai2_arc at commit {first} (**not pinned in this build**")),
        "{markdown}"
    );
    assert!(markdown.contains("data/hf/allenai/ai2_arc/ARC-Easy/test-00000-of-00001.parquet"), "{markdown}");
    assert!(markdown.contains("the publisher's LFS sha256"), "{markdown}");

    // Second run: nothing asked, nothing downloaded.
    let asked = server.requests().len();
    let out = nanochat(base.path(), &hub, &["data", "download", "--chat"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(server.requests().len(), asked, "{:?}", &server.requests()[asked..]);
    assert!(
        text(&out).contains("allenai/ai2_arc: 6 file(s)") && text(&out).contains("(0 downloaded, 6 already there)")
    );

    // `main` moves on; this base dir stays on the recorded commit, also for a file it fetches again.
    let moved_files = serve_hub(&server, &moved, "moved");
    let gone = files.iter().find(|f| f.repo == "openai/gsm8k" && f.path.starts_with("main/test-")).unwrap();
    std::fs::remove_file(gone.local(base.path())).unwrap();
    let out = nanochat(base.path(), &hub, &["data", "download", "--chat"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_all_in_place(base.path(), &files);
    assert_eq!(server.requests_for(&resolve_path(gone, &first)).len(), 2, "fetched again at the recorded commit");
    for file in &moved_files {
        assert!(server.requests_for(&resolve_path(file, &moved)).is_empty(), "{}", file.path);
    }
    for repo in &repos {
        assert_eq!(server.requests_for(&format!("/api/datasets/{repo}/revision/main")).len(), 1, "{repo}");
        assert_eq!(record(base.path(), repo)["commit"], first.as_str());
    }
}

#[test]
fn an_interrupted_download_resumes_and_verify_repairs_corruption() {
    let server = FaultServer::start().unwrap();
    let commit = "c".repeat(40);
    let files = serve_hub(&server, &commit, "resume");
    let base = tempfile::tempdir().unwrap();
    seed_extras(base.path());
    let hub = server.url("");

    let cut =
        files.iter().find(|f| f.repo == "HuggingFaceTB/smol-smoltalk" && f.path.starts_with("data/train")).unwrap();
    server.push_faults(&resolve_path(cut, &commit), [Fault::DropAfter(10_000)]);
    let out = nanochat(base.path(), &hub, &["data", "download", "--chat", "--attempts", "1"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("could not be downloaded") && text(&out).contains("Run the same command again"));
    let partial = cut.local(base.path()).with_file_name("train-00000-of-00001.parquet.partial");
    assert_eq!(std::fs::metadata(&partial).unwrap().len(), 10_000, "the partial file is kept");
    assert!(!cut.local(base.path()).exists());

    let out = nanochat(base.path(), &hub, &["data", "download", "--chat"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_all_in_place(base.path(), &files);
    let requests = server.requests_for(&resolve_path(cut, &commit));
    let last = requests.last().unwrap();
    assert_eq!((last.range.as_deref(), last.status), (Some("bytes=10000-"), 206), "{requests:?}");
    assert!(!partial.exists());

    // Same length, other bytes: only the sha256 can tell; `data verify --chat` fetches it again.
    let damaged = files.iter().find(|f| f.path == "ARC-Easy/test-00000-of-00001.parquet").unwrap();
    let mut bytes = damaged.bytes.clone();
    bytes[100] ^= 0xff;
    std::fs::write(damaged.local(base.path()), &bytes).unwrap();
    let out = nanochat(base.path(), &hub, &["data", "verify", "--chat"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("allenai/ai2_arc: 5 intact, 1 repaired, 0 failed"), "{}", text(&out));
    assert_all_in_place(base.path(), &files);

    // Plain `data verify` re-checks the chat data too when the preset lists a chat stage.
    let fineweb = "/api/datasets/karpathy/fineweb-edu-100b-shuffle/revision/main";
    server.serve(fineweb, json!({"sha": "f".repeat(40)}).to_string().into_bytes());
    let gone = files.iter().find(|f| f.repo == "openai/openai_humaneval").unwrap();
    std::fs::remove_file(gone.local(base.path())).unwrap();
    let stages = ["--set", "data.train_shards=0", "--set", "run.stages=[\"data\", \"sft\"]"];
    let out = nanochat(base.path(), &hub, &[&stages[..], &["data", "verify"]].concat());
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("openai/openai_humaneval: 0 intact, 1 repaired"), "{}", text(&out));
    assert_all_in_place(base.path(), &files);
    // Without a chat stage, plain `data verify` leaves the chat data alone.
    std::fs::remove_file(gone.local(base.path())).unwrap();
    let no_chat = ["--set", "data.train_shards=0", "--set", "run.stages=[\"data\", \"base-train\"]"];
    let out = nanochat(base.path(), &hub, &[&no_chat[..], &["data", "verify"]].concat());
    assert!(out.status.success(), "{}", text(&out));
    assert!(!gone.local(base.path()).exists());
}

#[test]
fn chat_data_errors_say_what_to_do() {
    // No Hub: names HF_ENDPOINT and data.mirror_url; nothing recorded.
    let base = tempfile::tempdir().unwrap();
    seed_extras(base.path());
    let out = nanochat(base.path(), UNREACHABLE, &["data", "download", "--chat"]);
    assert!(!out.status.success());
    let said = text(&out);
    assert!(said.contains("cannot resolve which commit of HuggingFaceTB/smol-smoltalk"), "{said}");
    assert!(said.contains("HF_ENDPOINT") && said.contains("data.mirror_url"), "{said}");
    assert!(!base.path().join("data/hf/HuggingFaceTB/smol-smoltalk/revision.json").exists());

    // A directory with no file a pattern wants at the commit.
    let server = FaultServer::start().unwrap();
    let commit = "d".repeat(40);
    let files = serve_hub(&server, &commit, "errors");
    let challenge: Vec<serde_json::Value> = files
        .iter()
        .filter(|f| f.path.starts_with("ARC-Challenge/") && !f.path.contains("/test-"))
        .map(|f| lfs_entry(&f.path, &f.bytes))
        .collect();
    let tree = format!("/api/datasets/allenai/ai2_arc/tree/{commit}/ARC-Challenge");
    server.serve(&tree, serde_json::Value::Array(challenge).to_string().into_bytes());
    let hub = server.url("");
    let out = nanochat(base.path(), &hub, &["data", "download", "--chat"]);
    assert!(!out.status.success());
    let said = text(&out);
    assert!(
        said.contains(&format!("allenai/ai2_arc at commit {commit} has no file matching ARC-Challenge/test-*.parquet")),
        "{said}"
    );
    assert!(said.contains("data/hf/allenai/ai2_arc/revision.json to resolve `main` again"), "{said}");
    // The commit was recorded before the listing failed: it never moves.
    assert_eq!(record(base.path(), "allenai/ai2_arc")["commit"], commit.as_str());

    // A damaged record: delete it to resolve again.
    let other = tempfile::tempdir().unwrap();
    seed_extras(other.path());
    let damaged = other.path().join("data/hf/HuggingFaceTB/smol-smoltalk");
    std::fs::create_dir_all(&damaged).unwrap();
    std::fs::write(damaged.join("revision.json"), "{\"repo\": \"HuggingFaceTB/smol-smoltalk\", \"commit\": 4").unwrap();
    let out = nanochat(other.path(), &hub, &["data", "download", "--chat"]);
    assert!(!out.status.success());
    let said = text(&out);
    assert!(
        said.contains("smol-smoltalk/revision.json is not a revision record") && said.contains("delete it"),
        "{said}"
    );

    // Bytes that do not match the publisher's sha256 never get the final name.
    let fresh = tempfile::tempdir().unwrap();
    seed_extras(fresh.path());
    let server = FaultServer::start().unwrap();
    let files = serve_hub(&server, &commit, "mismatch");
    let bad = files.iter().find(|f| f.repo == "openai/gsm8k" && f.path.starts_with("main/train")).unwrap();
    let mut other_bytes = bad.bytes.clone();
    other_bytes[7] ^= 0x20; // same size, other bytes
    server.serve(&resolve_path(bad, &commit), other_bytes);
    let out = nanochat(fresh.path(), &server.url(""), &["data", "download", "--chat", "--attempts", "1"]);
    assert!(!out.status.success());
    let said = text(&out);
    assert!(said.contains("main/train-00000-of-00001.parquet: sha256 mismatch"), "{said}");
    assert!(!bad.local(fresh.path()).exists());
}

/// A mirror holds `<owner>/<name>/<path>` and, as a copy of a base dir's `data/hf/`, the records:
/// then no Hub is needed at all. Without records the file list comes from the Hub, the bytes from the
/// mirror. The extras come from `<mirror>/<file name>`.
#[test]
fn a_mirror_laid_out_like_data_hf_serves_everything() {
    let server = FaultServer::start().unwrap();
    let commit = "e".repeat(40);
    let files = serve_hub(&server, &commit, "mirror");
    let source = tempfile::tempdir().unwrap();
    seed_extras(source.path());
    let out = nanochat(source.path(), &server.url(""), &["data", "download", "--chat"]);
    assert!(out.status.success(), "{}", text(&out));

    // The mirror: a copy of data/hf/ plus the extras at the top.
    let mirror_dir = tempfile::tempdir().unwrap();
    let copy = |from: &Path, to: &Path| {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to).unwrap();
    };
    let repos: Vec<String> = bundled_chat_datasets().unwrap().datasets.iter().map(|d| d.repo.clone()).collect();
    for file in &files {
        copy(&file.local(source.path()), &mirror_dir.path().join(&file.repo).join(&file.path));
    }
    for repo in &repos {
        let record = source.path().join("data/hf").join(repo).join("revision.json");
        copy(&record, &mirror_dir.path().join(repo).join("revision.json"));
    }
    for extra in ["identity_conversations.jsonl", "words_alpha.txt"] {
        copy(&source.path().join("data/chat-data").join(extra), &mirror_dir.path().join(extra));
    }
    let mirror = LocalMirror::serve(mirror_dir.path()).unwrap();
    let with_mirror = format!("data.mirror_url={}", mirror.url());

    let base = tempfile::tempdir().unwrap();
    let out = nanochat(base.path(), UNREACHABLE, &["--set", &with_mirror, "data", "download", "--chat"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_all_in_place(base.path(), &files);
    for extra in ["identity_conversations.jsonl", "words_alpha.txt"] {
        let got = std::fs::read(base.path().join("data/chat-data").join(extra)).unwrap();
        assert_eq!(got, std::fs::read(mirror_dir.path().join(extra)).unwrap(), "{extra}");
    }
    for repo in &repos {
        assert_eq!(record(base.path(), repo)["commit"], commit.as_str());
    }
    let source_value = report_value(&report_section(base.path()), "chat_source");
    assert_eq!(source_value, format!("mirror {}", mirror.url()).as_str());

    // A mirror without records: the list from the Hub, the bytes from the mirror only.
    for repo in &repos {
        std::fs::remove_file(mirror_dir.path().join(repo).join("revision.json")).unwrap();
    }
    let resolved_before = server.requests().iter().filter(|r| r.path.contains("/resolve/")).count();
    let other = tempfile::tempdir().unwrap();
    let out = nanochat(other.path(), &server.url(""), &["--set", &with_mirror, "data", "download", "--chat"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_all_in_place(other.path(), &files);
    let resolved_after = server.requests().iter().filter(|r| r.path.contains("/resolve/")).count();
    assert_eq!(resolved_after, resolved_before, "no file bytes from the Hub");
}

#[test]
fn smoke_stand_ins_arrive_byte_identical_through_the_local_hub() {
    let stand_ins = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/data/chat_smoke");
    let sources: toml::Table = std::fs::read_to_string(stand_ins.join("SOURCES.toml")).unwrap().parse().unwrap();
    let listed: Vec<String> =
        sources["file"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap().to_string()).collect();
    let repos: Vec<String> = bundled_chat_datasets().unwrap().datasets.iter().map(|d| d.repo.clone()).collect();
    let local = |base: &Path, path: &str| {
        if path.contains('/') {
            base.join("data/hf").join(path)
        } else {
            base.join("data/chat-data").join(path)
        }
    };
    let smoke = |base: &Path, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_nanochat"))
            .arg("--base-dir")
            .arg(base)
            .args(["--preset", "smoke"])
            .args(args)
            .env("HF_ENDPOINT", UNREACHABLE)
            .env_remove("NANOCHAT_OUTPUT_CAPTURED")
            .env_remove("NANOCHAT_PRESET")
            .output()
            .unwrap()
    };

    let base = tempfile::tempdir().unwrap();
    let out = smoke(base.path(), &["data", "download", "--chat"]);
    assert!(out.status.success(), "{}", text(&out));
    for path in &listed {
        let got = std::fs::read(local(base.path(), path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(got == std::fs::read(stand_ins.join(path)).unwrap(), "{path} differs from its stand-in");
    }
    for repo in &repos {
        let record = record(base.path(), repo);
        assert_eq!(record["stand_in"], true, "{repo}");
        assert_eq!(record["resolved_from"], "main", "{repo}: resolved through the local Hub's revision API");
    }
    // Served from the Hub-shaped directory through the real downloader.
    let hub = base.path().join("mirror/chat-smoke");
    let commit = record(base.path(), "openai/gsm8k")["commit"].as_str().unwrap().to_string();
    assert!(hub.join(format!("api/datasets/openai/gsm8k/tree/{commit}/main")).is_file());
    let section = report_section(base.path());
    assert_eq!(report_value(&section, "pinned"), listed.len(), "every stand-in is pinned by SOURCES.toml");
    assert!(report_markdown(&section).contains("smoke stand-ins"), "{}", report_markdown(&section));

    // Again: nothing to do.
    let out = smoke(base.path(), &["data", "download", "--chat"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains(" 1 downloaded") && text(&out).contains("(0 downloaded"), "{}", text(&out));

    // Plain `data download` fetches them when a chat stage is listed (here with no shards to fetch).
    let fresh = tempfile::tempdir().unwrap();
    let stages = ["--set", "data.train_shards=0", "--set", "run.stages=[\"data\", \"mid-train\", \"sft\"]"];
    let out = smoke(fresh.path(), &[&stages[..], &["data", "download"]].concat());
    assert!(out.status.success(), "{}", text(&out));
    for path in &listed {
        assert!(local(fresh.path(), path).is_file(), "{path}");
    }
    // ... and not when none is.
    let without = tempfile::tempdir().unwrap();
    let no_chat = ["--set", "data.train_shards=0", "--set", "run.stages=[\"data\", \"base-train\"]"];
    let out = smoke(without.path(), &[&no_chat[..], &["data", "download"]].concat());
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !without.path().join("data/hf").exists()
            || std::fs::read_dir(without.path().join("data/hf")).unwrap().count() == 0
    );

    // Stand-ins and real data never mix in one base dir.
    let out = nanochat(base.path(), UNREACHABLE, &["data", "download", "--chat"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("holds the smoke stand-ins") && text(&out).contains("--base-dir"), "{}", text(&out));
}

#[test]
fn the_data_wait_stage_produces_the_chat_data_when_a_chat_stage_is_listed() {
    use nanochat::speedrun::stage::{stage_spec, PipelineOptions};
    let paths = nanochat::paths::Paths::new("/base");
    let plain = nanochat::config::resolve("smoke", &["run.stages=[\"data\", \"data-wait\"]".into()], None).unwrap();
    let wait = stage_spec("data-wait", &plain, &paths, &PipelineOptions::default()).unwrap();
    assert!(wait.outputs.iter().all(|o| o.starts_with("/base/data/smoke")), "{:?}", wait.outputs);
    assert!(wait.config.get("chat_data").is_none(), "unchanged for presets without chat stages");

    let chat =
        nanochat::config::resolve("smoke", &["run.stages=[\"data\", \"data-wait\", \"sft\"]".into()], None).unwrap();
    let wait = stage_spec("data-wait", &chat, &paths, &PipelineOptions::default()).unwrap();
    assert_eq!(wait.args, ["data", "download", "--wait"]);
    assert!(wait.outputs.contains(&Path::new("/base/data/hf").to_path_buf()), "{:?}", wait.outputs);
    assert!(wait.outputs.contains(&Path::new("/base/data/chat-data").to_path_buf()), "{:?}", wait.outputs);
    assert_eq!(wait.config["chat_data"], true);
}

/// A wanted file the listing gives without `lfs` (kept in git: its `oid` is no sha256) is downloaded
/// like any unpinned file: its sha256 recorded in the dataset's checksum ledger at the first download,
/// checked against it from then on.
#[test]
fn a_file_outside_lfs_follows_the_ledger_policy() {
    let server = FaultServer::start().unwrap();
    let commit = "9".repeat(40);
    let files = serve_hub(&server, &commit, "git");
    let humaneval = files.iter().find(|f| f.repo == "openai/openai_humaneval").unwrap();
    let listing =
        json!([{"type": "file", "oid": "3".repeat(40), "size": humaneval.bytes.len(), "path": humaneval.path}]);
    server.serve(
        &format!("/api/datasets/openai/openai_humaneval/tree/{commit}/openai_humaneval"),
        listing.to_string().into_bytes(),
    );
    let base = tempfile::tempdir().unwrap();
    seed_extras(base.path());
    let out = nanochat(base.path(), &server.url(""), &["data", "download", "--chat"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_all_in_place(base.path(), &files);
    let recorded = &record(base.path(), "openai/openai_humaneval")["files"][0];
    assert!(recorded.get("sha256").is_none(), "{recorded}");
    let ledger_path = base.path().join("data/hf/openai/openai_humaneval/checksums.ledger.json");
    let ledger: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(ledger_path).unwrap()).unwrap();
    let entry = &ledger["files"][humaneval.path.as_str()];
    assert_eq!(entry["sha256"], Sha256Digest::of_bytes(&humaneval.bytes).as_hex());
    assert_eq!(entry["source"], "first-download");
    let row = report_markdown(&report_section(base.path()));
    let row = row.lines().find(|l| l.contains("openai_humaneval/test-")).unwrap();
    assert!(row.contains("**unpinned**"), "{row}");

    // From then on the ledger vouches for it.
    let mut bytes = humaneval.bytes.clone();
    bytes[3] ^= 0x01;
    std::fs::write(humaneval.local(base.path()), &bytes).unwrap();
    let out = nanochat(base.path(), &server.url(""), &["data", "verify", "--chat"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("openai/openai_humaneval: 0 intact, 1 repaired"), "{}", text(&out));
    assert_all_in_place(base.path(), &files);
}
