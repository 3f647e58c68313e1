//! `nanochat data download | verify | pin` through the binary, against shards the tests write and
//! serve on 127.0.0.1 (the loopback fault server, or the production `LocalMirror`), never the
//! internet: the mirror override, --first with a detached background process and --wait (also
//! repairing a failed background run), verify repairing a damaged shard, pinned checksums refused
//! from a mirror with other bytes, pinning a manifest file, the "Data" report section, the speedrun
//! stages, and `LocalMirror`'s HTTP behaviour (Range, HEAD, subdirectories, 404, stop on drop).
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

#[path = "support/fault_server.rs"]
mod fault_server;
use fault_server::{Fault, FaultServer};
use nanochat::data::shard_writer::{write_shard, ShardWriterOptions};
use nanochat::download::{
    Checksum, ChecksumLedger, DataManifest, DownloadOptions, LocalMirror, ManifestEntry, Sha256Digest, ShardDownloader,
    LEDGER_FILE_NAME,
};

fn nanochat(base: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nanochat"))
        .arg("--base-dir")
        .arg(base)
        .args(args)
        .env_remove("NANOCHAT_OUTPUT_CAPTURED")
        .env_remove("NANOCHAT_PRESET")
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn shard_name(i: usize) -> String {
    format!("shard_{i:05}.parquet")
}

/// `count` small parquet shards of distinct documents, as bytes.
fn make_shards(count: usize) -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    (0..count)
        .map(|i| {
            let docs: Vec<String> = (0..300)
                .map(|d| {
                    format!("Document {d} of shard {i}: the quick brown fox jumps over the lazy dog {}.", d * 7 + i)
                })
                .collect();
            let path = dir.path().join(shard_name(i));
            write_shard(&path, &docs, ShardWriterOptions { docs_per_row_group: 64, ..Default::default() }).unwrap();
            std::fs::read(path).unwrap()
        })
        .collect()
}

/// Overrides turning the smoke preset into a FineWeb-style download of `train` shards from `mirror`
/// (the pretraining stages only: no chat data).
fn fineweb_sets(mirror: &str, train: usize) -> Vec<String> {
    [
        "--preset".to_string(),
        "smoke".into(),
        "--set".into(),
        "run.stages=[\"doctor\", \"data\", \"tok-train\", \"data-wait\", \"base-train\", \"report\"]".into(),
        "--set".into(),
        "data.manifest=fineweb-edu-100b".into(),
        "--set".into(),
        format!("data.train_shards={train}"),
        "--set".into(),
        "data.tokenizer_shards=2".into(),
        "--set".into(),
        format!("data.mirror_url={mirror}"),
    ]
    .to_vec()
}

fn run(base: &Path, sets: &[String], tail: &[&str]) -> Output {
    let args: Vec<&str> = sets.iter().map(String::as_str).chain(tail.iter().copied()).collect();
    nanochat(base, &args)
}

fn report_section(base: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(base.join("report/data.json")).expect("report/data.json");
    serde_json::from_str(&text).unwrap()
}

fn report_markdown(section: &serde_json::Value) -> String {
    section["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e.get("text").and_then(|t| t.as_str()))
        .collect::<Vec<_>>()
        .join("\n")
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

/// Table row of `file` in the Data section's markdown.
fn report_row<'a>(markdown: &'a str, file: &str) -> &'a str {
    markdown.lines().find(|l| l.contains(file)).unwrap_or_else(|| panic!("no row for {file} in\n{markdown}"))
}

#[test]
fn first_shards_now_the_rest_in_the_background_then_wait() {
    let shards = make_shards(5);
    let server = FaultServer::start().unwrap();
    for (i, bytes) in shards.iter().enumerate() {
        // Shard 0 is announced like HuggingFace does (LFS sha256 in x-linked-etag); the others are not.
        let headers = if i == 0 {
            vec![("x-linked-etag".to_string(), format!("\"{}\"", Sha256Digest::of_bytes(bytes)))]
        } else {
            Vec::new()
        };
        server.serve_with_headers(&format!("/{}", shard_name(i)), bytes.clone(), headers);
    }
    // The last shard trickles in, so the background process is still at work when --first returns.
    server.push_faults(
        &format!("/{}", shard_name(4)),
        [Fault::Trickle { chunk: shards[4].len() / 8 + 1, delay: Duration::from_millis(250) }],
    );
    let base = tempfile::tempdir().unwrap();
    let sets = fineweb_sets(&server.url(""), 5);
    let data = base.path().join("data/fineweb-edu-100b");

    let out = run(base.path(), &sets, &["data", "download", "--first", "3", "--background-rest"]);
    assert!(out.status.success(), "{}", text(&out));
    for (i, bytes) in shards.iter().enumerate().take(3) {
        assert_eq!(&std::fs::read(data.join(shard_name(i))).unwrap(), bytes, "shard {i}");
    }
    let pid_file = data.join(".download-rest.pid");
    assert!(pid_file.exists(), "the background process records its pid: {}", text(&out));
    let log = base.path().join("logs/data-download-rest.log");
    assert!(std::fs::read_to_string(&log).unwrap().contains("data download"), "log header");
    // The report of the foreground part lists the files present so far.
    assert_eq!(report_value(&report_section(base.path()), "files"), 3);

    let out = run(base.path(), &sets, &["data", "download", "--wait"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("waiting for the background download"), "{}", text(&out));
    for (i, bytes) in shards.iter().enumerate() {
        assert_eq!(&std::fs::read(data.join(shard_name(i))).unwrap(), bytes, "shard {i}");
    }
    assert!(!pid_file.exists(), "pid file removed once the background process ended");
    let leftovers: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let rest_log = std::fs::read_to_string(&log).unwrap();
    assert!(rest_log.contains("shards: 5 file(s)"), "the background process fetched the rest:\n{rest_log}");
    // Every shard was transferred by one process only: shards 0-2 once, 3 and 4 by the background one.
    for i in 0..5 {
        let gets = server.requests_for(&format!("/{}", shard_name(i)));
        assert_eq!(gets.iter().filter(|r| r.status == 200).count(), 1, "shard {i}: {gets:?}");
    }

    // The Data section: every file with its sha256 and how far it is vouched for.
    let section = report_section(base.path());
    assert_eq!(section["title"], "Data");
    assert_eq!(report_value(&section, "files"), 5);
    assert_eq!(report_value(&section, "server_announced"), 1);
    assert_eq!(report_value(&section, "unpinned_first_download"), 4);
    let markdown = report_markdown(&section);
    for (i, bytes) in shards.iter().enumerate() {
        let row = report_row(&markdown, &shard_name(i));
        assert!(row.contains(Sha256Digest::of_bytes(bytes).as_hex()), "{row}");
        let expected = if i == 0 { "server-announced" } else { "unpinned" };
        assert!(row.contains(expected), "{row}");
    }
    assert!(markdown.contains("data pin --from ledger"), "unpinned files come with the way to pin them");
    let ledger = ChecksumLedger::open(&data.join(LEDGER_FILE_NAME)).unwrap();
    assert_eq!(ledger.records().count(), 5);
}

#[test]
fn wait_repairs_a_failed_background_download() {
    let shards = make_shards(4);
    let server = FaultServer::start().unwrap();
    for (i, bytes) in shards.iter().enumerate() {
        server.serve(&format!("/{}", shard_name(i)), bytes.clone());
    }
    // The background process gets a 404 for the last shard (4xx: no retry) and fails.
    server.push_faults(&format!("/{}", shard_name(3)), [Fault::Status(404)]);
    let base = tempfile::tempdir().unwrap();
    let sets = fineweb_sets(&server.url(""), 4);
    let data = base.path().join("data/fineweb-edu-100b");

    let out = run(base.path(), &sets, &["data", "download", "--first", "2", "--background-rest"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = run(base.path(), &sets, &["data", "download", "--wait"]);
    assert!(out.status.success(), "{}", text(&out));
    let rest_log = std::fs::read_to_string(base.path().join("logs/data-download-rest.log")).unwrap();
    assert!(rest_log.contains("background download failed"), "{rest_log}");
    for (i, bytes) in shards.iter().enumerate() {
        assert_eq!(&std::fs::read(data.join(shard_name(i))).unwrap(), bytes, "shard {i}");
    }
    assert_eq!(server.requests_for(&format!("/{}", shard_name(3))).len(), 2, "once failed, once repaired");
}

#[test]
fn verify_repairs_a_damaged_shard_and_refuses_changed_mirror_bytes() {
    let shards = make_shards(3);
    let mirror_dir = tempfile::tempdir().unwrap();
    for (i, bytes) in shards.iter().enumerate() {
        std::fs::write(mirror_dir.path().join(shard_name(i)), bytes).unwrap();
    }
    let mirror = LocalMirror::serve(mirror_dir.path()).unwrap();
    let base = tempfile::tempdir().unwrap();
    let sets = fineweb_sets(&mirror.url(), 3);
    let data = base.path().join("data/fineweb-edu-100b");
    let out = run(base.path(), &sets, &["data", "download"]);
    assert!(out.status.success(), "{}", text(&out));

    // Same length, different bytes: only the hash can tell.
    let damaged = data.join(shard_name(1));
    let mut bytes = std::fs::read(&damaged).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&damaged, &bytes).unwrap();
    let out = run(base.path(), &sets, &["data", "verify"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("2 intact, 1 repaired"), "{}", text(&out));
    assert_eq!(std::fs::read(&damaged).unwrap(), shards[1]);

    // The mirror now serves other bytes for a shard whose sha256 the ledger recorded: refused.
    std::fs::remove_file(data.join(shard_name(2))).unwrap();
    std::fs::write(mirror_dir.path().join(shard_name(2)), &shards[0]).unwrap();
    let out = run(base.path(), &sets, &["data", "verify", "--attempts", "1"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("could not be repaired"), "{}", text(&out));
    assert!(!data.join(shard_name(2)).exists(), "a file that does not verify never gets its final name");
}

#[test]
fn pinned_checksums_are_not_taken_from_the_mirror() {
    // The smoke shards and the tokenizer files are pinned: junk from a mirror is refused.
    let server = FaultServer::start().unwrap();
    server.serve("/shard_00000.parquet", b"not the smoke shard".to_vec());
    server.serve("/r50k_base.tiktoken", b"not the GPT-2 tokenizer".to_vec());
    server.serve("/cl100k_base.tiktoken", b"not the GPT-4 tokenizer".to_vec());
    let base = tempfile::tempdir().unwrap();
    let mirror = format!("data.mirror_url={}", server.url(""));
    let out = nanochat(
        base.path(),
        &["--preset", "smoke", "--set", &mirror, "data", "download", "--first", "1", "--attempts", "1"],
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("sha256"), "{}", text(&out));
    assert!(!base.path().join("data/smoke/shard_00000.parquet").exists());

    let out = nanochat(
        base.path(),
        &[
            "--preset",
            "smoke",
            "--set",
            &mirror,
            "--set",
            "tok_eval.compare_baselines=true",
            "data",
            "download",
            "--first",
            "1",
            "--attempts",
            "2",
        ],
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("r50k_base.tiktoken"), "{}", text(&out));
    assert!(!base.path().join("data/tokenizers/r50k_base.tiktoken").exists());
}

#[test]
fn pin_fills_unpinned_checksums_from_the_server_and_the_ledger() {
    let announced = b"a file whose server announces its sha256".to_vec();
    let silent = b"a file whose server says nothing".to_vec();
    let server = FaultServer::start().unwrap();
    server.serve_with_headers(
        "/announced.bin",
        announced.clone(),
        vec![("x-checksum-sha256".into(), Sha256Digest::of_bytes(&announced).to_string())],
    );
    server.serve("/silent.bin", silent.clone());
    let dir = tempfile::tempdir().unwrap();
    let entry = |name: &str| ManifestEntry {
        name: name.into(),
        url: server.url(&format!("/{name}")),
        size: None,
        sha256: Checksum::Unpinned,
        license: "test data".into(),
    };
    let manifest = DataManifest::new("two test files", vec![entry("announced.bin"), entry("silent.bin")]).unwrap();
    let manifest_path = dir.path().join("test.toml");
    std::fs::write(&manifest_path, manifest.to_toml_string().unwrap()).unwrap();
    let base = tempfile::tempdir().unwrap();
    let file = manifest_path.to_str().unwrap();

    // From the server: only the announced file can be pinned; printed on stdout.
    let out = nanochat(base.path(), &["--preset", "smoke", "data", "pin", "--manifest", file]);
    assert!(out.status.success(), "{}", text(&out));
    let printed = DataManifest::parse(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert_eq!(printed.entry("announced.bin").unwrap().sha256, Checksum::Pinned(Sha256Digest::of_bytes(&announced)));
    assert_eq!(printed.entry("announced.bin").unwrap().size, Some(announced.len() as u64));
    assert_eq!(printed.entry("silent.bin").unwrap().sha256, Checksum::Unpinned);
    assert!(text(&out).contains("silent.bin: still unpinned"), "{}", text(&out));

    // A verified download records the silent one in a ledger; pinning from both fills everything.
    let downloads = dir.path().join("downloads");
    let ledger_path = downloads.join(LEDGER_FILE_NAME);
    let downloader =
        ShardDownloader::new(DownloadOptions::default()).with_ledger(ChecksumLedger::open(&ledger_path).unwrap());
    downloader.download_all(&manifest.files, &downloads).unwrap();
    let ledger = ledger_path.to_str().unwrap();
    let out = nanochat(
        base.path(),
        &["--preset", "smoke", "data", "pin", "--manifest", file, "--from", "both", "--ledger", ledger, "--write"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let written = DataManifest::load(&manifest_path).unwrap();
    assert_eq!(written.unpinned().count(), 0, "{written:?}");
    assert_eq!(written.entry("silent.bin").unwrap().sha256, Checksum::Pinned(Sha256Digest::of_bytes(&silent)));

    // Built-in manifests are compiled in: --write is refused, --output works.
    let out = nanochat(base.path(), &["--preset", "smoke", "data", "pin", "--manifest", "tokenizers", "--write"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("--output"), "{}", text(&out));
}

#[test]
fn speedrun_stages_fetch_the_tokenizer_shards_first_and_wait_for_the_rest() {
    use nanochat::speedrun::stage::{stage_spec, PipelineOptions, KNOWN_STAGES};
    let position = |s: &str| KNOWN_STAGES.iter().position(|k| *k == s).unwrap();
    assert!(position("doctor") < position("data") && position("data") < position("tok-train"));
    assert!(position("tok-eval") < position("data-wait") && position("data-wait") < position("report"));

    let config = nanochat::config::resolve("smoke", &[], None).unwrap();
    assert_eq!((config.data.tokenizer_shards, config.data.train_shards), (2, 6));
    let paths = nanochat::paths::Paths::new("/base");
    let data = stage_spec("data", &config, &paths, &PipelineOptions::default()).unwrap();
    // tok-train reads tokenizer_shards and needs one more as validation.
    assert_eq!(data.args, ["data", "download", "--first", "3", "--background-rest"]);
    assert_eq!(data.outputs.len(), 3);
    assert_eq!(data.outputs[0], Path::new("/base/data/smoke/shard_00000.parquet"));
    let wait = stage_spec("data-wait", &config, &paths, &PipelineOptions::default()).unwrap();
    assert_eq!(wait.args, ["data", "download", "--wait"]);
    // Every shard, and the chat data since the preset lists chat stages.
    assert_eq!(wait.outputs.len(), 8);
    assert_eq!(wait.outputs[5], Path::new("/base/data/smoke/shard_00005.parquet"));
    assert_eq!(wait.outputs[6..], [Path::new("/base/data/hf"), Path::new("/base/data/chat-data")]);
    // The mirror does not change what the stages produce.
    let mirrored = nanochat::config::resolve("smoke", &["data.mirror_url=http://127.0.0.1:1".into()], None).unwrap();
    assert_eq!(stage_spec("data-wait", &mirrored, &paths, &PipelineOptions::default()).unwrap().config, wait.config);
}

/// One raw HTTP/1.1 exchange: (status, headers lower-cased, body).
fn http(addr: std::net::SocketAddr, request: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, raw[split + 4..].to_vec())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[test]
fn local_mirror_serves_ranges_heads_and_404s_and_stops_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let body: Vec<u8> = (0..100_000u32).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(dir.path().join("file.bin"), &body).unwrap();
    std::fs::write(dir.path().join(".hidden"), b"secret").unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/inner.bin"), b"inner").unwrap();
    let mirror = LocalMirror::serve(dir.path()).unwrap();
    let addr = mirror.addr();
    assert_eq!(mirror.url(), format!("http://{addr}"));

    let (status, headers, got) = http(addr, "GET /file.bin HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((status, got.len()), (200, body.len()));
    assert_eq!(got, body);
    assert_eq!(header(&headers, "content-length"), Some("100000"));
    assert_eq!(header(&headers, "accept-ranges"), Some("bytes"));

    let (status, headers, got) = http(addr, "GET /file.bin HTTP/1.1\r\nRange: bytes=1000-1999\r\n\r\n");
    assert_eq!(status, 206);
    assert_eq!(got, &body[1000..2000]);
    assert_eq!(header(&headers, "content-range"), Some("bytes 1000-1999/100000"));
    assert_eq!(header(&headers, "content-length"), Some("1000"));

    let (status, headers, got) = http(addr, "GET /file.bin HTTP/1.1\r\nrange: bytes=99990-\r\n\r\n");
    assert_eq!((status, got.as_slice()), (206, &body[99_990..]));
    assert_eq!(header(&headers, "content-range"), Some("bytes 99990-99999/100000"));
    let (status, _, got) = http(addr, "GET /file.bin HTTP/1.1\r\nRange: bytes=-10\r\n\r\n");
    assert_eq!((status, got.as_slice()), (206, &body[99_990..]));

    let (status, headers, got) = http(addr, "GET /file.bin HTTP/1.1\r\nRange: bytes=100000-\r\n\r\n");
    assert_eq!((status, got.len()), (416, 0));
    assert_eq!(header(&headers, "content-range"), Some("bytes */100000"));

    let (status, headers, got) = http(addr, "HEAD /file.bin HTTP/1.1\r\n\r\n");
    assert_eq!((status, got.len()), (200, 0));
    assert_eq!(header(&headers, "content-length"), Some("100000"));

    // Files in subdirectories are served (the Hub-shaped layout of the chat stand-ins); nothing hidden,
    // no directory, nothing outside the root.
    let (status, _, got) = http(addr, "GET /sub/inner.bin HTTP/1.1\r\n\r\n");
    assert_eq!((status, got.as_slice()), (200, b"inner".as_slice()));
    std::fs::write(dir.path().join("sub/.secret"), b"secret").unwrap();
    for target in ["/missing.bin", "/.hidden", "/sub/.secret", "/sub/../file.bin", "/../file.bin", "/sub", "/sub/", "/"]
    {
        let (status, _, _) = http(addr, &format!("GET {target} HTTP/1.1\r\n\r\n"));
        assert_eq!(status, 404, "{target}");
    }
    let (status, headers, _) = http(addr, "POST /file.bin HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(status, 405);
    assert_eq!(header(&headers, "allow"), Some("GET, HEAD"));

    // The real downloader resumes a partial file from it with a Range request.
    let dest = tempfile::tempdir().unwrap();
    std::fs::write(dest.path().join("file.bin.partial"), &body[..40_000]).unwrap();
    let entry = ManifestEntry {
        name: "file.bin".into(),
        url: format!("{}/file.bin", mirror.url()),
        size: Some(body.len() as u64),
        sha256: Checksum::Pinned(Sha256Digest::of_bytes(&body)),
        license: "test data".into(),
    };
    let file = ShardDownloader::new(DownloadOptions::default()).download(&entry, dest.path()).unwrap();
    assert_eq!(file.status, nanochat::download::FileStatus::Downloaded { attempts: 1, resumed_from: 40_000 });
    assert_eq!(std::fs::read(dest.path().join("file.bin")).unwrap(), body);

    drop(mirror);
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err(), "stopped on drop");
}

/// Without a pin in the build and without a mirror, the first download resolves `main` to a commit
/// through the Hub API (HF_ENDPOINT here is a local server) and records it; every shard comes from
/// that commit, and a later download keeps using it after `main` has moved.
#[test]
fn unpinned_dataset_revision_is_resolved_once_and_recorded() {
    let shards = make_shards(3);
    let server = FaultServer::start().unwrap();
    let (first, moved) = ("a".repeat(40), "b".repeat(40));
    let api = "/api/datasets/karpathy/fineweb-edu-100b-shuffle/revision/main";
    server.serve(api, format!("{{\"id\":\"karpathy/fineweb-edu-100b-shuffle\",\"sha\":\"{first}\"}}").into_bytes());
    for (i, bytes) in shards.iter().enumerate() {
        let path = format!("/datasets/karpathy/fineweb-edu-100b-shuffle/resolve/{first}/{}", shard_name(i));
        server.serve(&path, bytes.clone());
    }
    let base = tempfile::tempdir().unwrap();
    let mut sets = fineweb_sets("", 2);
    sets.truncate(sets.len() - 2); // no data.mirror_url
    let download = |train: &str| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_nanochat"));
        command.arg("--base-dir").arg(base.path()).args(&sets).args(["--set", train, "data", "download"]);
        command.env("HF_ENDPOINT", server.url("")).env_remove("NANOCHAT_PRESET").output().unwrap()
    };
    let out = download("data.train_shards=2");
    assert!(out.status.success(), "{}", text(&out));
    let data = base.path().join("data/fineweb-edu-100b");
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("revision.json")).unwrap()).unwrap();
    assert_eq!(record["commit"], first.as_str());
    assert_eq!(record["resolved_from"], "main");
    let source = report_value(&report_section(base.path()), "source");
    let source = source.as_str().unwrap_or_default();
    assert!(source.contains(&format!("at commit {first} (**not pinned in this build**")), "{source}");

    // `main` moves on; this base dir stays on the recorded commit (the new one has no files at all).
    server.serve(api, format!("{{\"sha\":\"{moved}\"}}").into_bytes());
    let out = download("data.train_shards=3");
    assert!(out.status.success(), "{}", text(&out));
    for (i, bytes) in shards.iter().enumerate() {
        assert_eq!(&std::fs::read(data.join(shard_name(i))).unwrap(), bytes, "shard {i}");
    }
    assert_eq!(server.requests_for(api).len(), 1, "main is resolved once per base dir");

    // A Hub that cannot be asked is a clear error naming the way out.
    let other = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_nanochat"))
        .arg("--base-dir")
        .arg(other.path())
        .args(&sets)
        .args(["data", "download"])
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .env_remove("NANOCHAT_PRESET")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("cannot resolve which commit of karpathy/fineweb-edu-100b-shuffle"), "{}", text(&out));
    assert!(text(&out).contains("data.mirror_url"), "{}", text(&out));
}
