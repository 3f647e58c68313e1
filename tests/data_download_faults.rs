//! Download fault tests against the loopback fault server: resume, retries, corrupt bytes, lying
//! lengths, stalls, 4xx, unpinned checksums, cancellation and a killed process (DESIGN.md "Tests").
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "support/fault_server.rs"]
mod fault_server;
use fault_server::{Fault, FaultServer};
use nanochat::download::{
    Checksum, ChecksumLedger, ChecksumOrigin, DownloadError, DownloadOptions, DownloadProgress, FileStatus,
    ManifestEntry, RetryPolicy, Sha256Digest, ShardDownloader, LEDGER_FILE_NAME,
};

fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect()
}

fn options() -> DownloadOptions {
    DownloadOptions {
        parallelism: 2,
        retry: RetryPolicy {
            max_attempts: 4,
            initial_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(40),
            jitter: 0.5,
        },
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(5),
        ..DownloadOptions::default()
    }
}

fn pinned(server: &FaultServer, name: &str, body: &[u8]) -> ManifestEntry {
    ManifestEntry {
        name: name.into(),
        url: server.url(&format!("/{name}")),
        size: Some(body.len() as u64),
        sha256: Checksum::Pinned(Sha256Digest::of_bytes(body)),
        license: "test data".into(),
    }
}

fn unpinned(server: &FaultServer, name: &str) -> ManifestEntry {
    ManifestEntry {
        name: name.into(),
        url: server.url(&format!("/{name}")),
        size: None,
        sha256: Checksum::Unpinned,
        license: "test data".into(),
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<_> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// Polls `path` while a download runs and remembers whether it ever held anything but `good`.
struct FinalNameWatcher {
    stop: Arc<AtomicBool>,
    bad_seen: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FinalNameWatcher {
    fn start(path: std::path::PathBuf, good: Vec<u8>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let bad_seen = Arc::new(AtomicBool::new(false));
        let thread = {
            let (stop, bad_seen) = (stop.clone(), bad_seen.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    if let Ok(bytes) = std::fs::read(&path) {
                        if bytes != good {
                            bad_seen.store(true, Ordering::SeqCst);
                        }
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
            })
        };
        Self { stop, bad_seen, thread: Some(thread) }
    }

    fn saw_bad_bytes(mut self) -> bool {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        self.bad_seen.load(Ordering::SeqCst)
    }
}

#[test]
fn downloads_a_pinned_file_and_reports_progress() {
    let server = FaultServer::start().unwrap();
    let body = payload(700_000, 1);
    server.serve("/a.bin", body.clone());
    let dir = tempfile::tempdir().unwrap();
    let seen: Arc<Mutex<Vec<DownloadProgress>>> = Arc::default();
    let downloader = ShardDownloader::new(options()).with_progress({
        let seen = seen.clone();
        move |p| seen.lock().unwrap().push(p.clone())
    });
    let file = downloader.download(&pinned(&server, "a.bin", &body), dir.path()).unwrap();
    assert_eq!(std::fs::read(dir.path().join("a.bin")).unwrap(), body);
    assert_eq!(file.status, FileStatus::Downloaded { attempts: 1, resumed_from: 0 });
    assert_eq!(file.checksum_origin, ChecksumOrigin::Manifest);
    assert_eq!(names_in(dir.path()), ["a.bin"]);
    let seen = seen.lock().unwrap();
    let last = seen.last().unwrap();
    assert_eq!((last.bytes_done, last.bytes_total, last.files_done, last.files_total), (700_000, 700_000, 1, 1));
    assert!(seen.len() >= 3, "progress is reported per chunk");
    assert!(seen.windows(2).all(|w| w[0].bytes_transferred <= w[1].bytes_transferred));
    assert_eq!((last.bytes_transferred, last.sizes_pending), (700_000, 0));
    drop(seen);

    // A second run finds the verified file and does not touch the network.
    let again = downloader.download(&pinned(&server, "a.bin", &body), dir.path()).unwrap();
    assert_eq!(again.status, FileStatus::AlreadyPresent);
    assert_eq!(server.requests_for("/a.bin").len(), 1);
}

#[test]
fn dropped_connection_resumes_with_range_and_is_byte_identical() {
    let server = FaultServer::start().unwrap();
    let body = payload(500_000, 2);
    server.serve("/b.bin", body.clone());
    server.push_faults("/b.bin", [Fault::DropAfter(123_457)]);
    let dir = tempfile::tempdir().unwrap();
    let file = ShardDownloader::new(options()).download(&pinned(&server, "b.bin", &body), dir.path()).unwrap();
    assert_eq!(std::fs::read(&file.path).unwrap(), body);
    let requests = server.requests_for("/b.bin");
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].range, None);
    let resumed_at: u64 =
        requests[1].range.as_deref().unwrap().trim_start_matches("bytes=").trim_end_matches('-').parse().unwrap();
    assert!(resumed_at > 0 && resumed_at <= 123_457, "resumed at {resumed_at}");
    assert_eq!(requests[1].status, 206);
    assert_eq!(names_in(dir.path()), ["b.bin"]);
}

#[test]
fn server_errors_are_retried_with_backoff() {
    let server = FaultServer::start().unwrap();
    let body = payload(10_000, 3);
    server.serve("/c.bin", body.clone());
    server.push_faults("/c.bin", [Fault::Status(503), Fault::Status(500)]);
    let dir = tempfile::tempdir().unwrap();
    let file = ShardDownloader::new(options()).download(&pinned(&server, "c.bin", &body), dir.path()).unwrap();
    assert_eq!(file.status, FileStatus::Downloaded { attempts: 3, resumed_from: 0 });
    assert_eq!(std::fs::read(&file.path).unwrap(), body);
}

#[test]
fn client_errors_fail_at_once_with_a_clear_message() {
    let server = FaultServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let entry = pinned(&server, "missing.bin", b"whatever");
    let error = ShardDownloader::new(options()).download(&entry, dir.path()).unwrap_err();
    assert!(matches!(error, DownloadError::HttpClient { status: 404, .. }), "{error:?}");
    assert!(!error.is_retryable());
    let message = error.to_string();
    assert!(message.contains("404") && message.contains("missing.bin") && message.contains("not retried"), "{message}");
    assert_eq!(server.requests_for("/missing.bin").len(), 1, "4xx is not retried");
    assert!(names_in(dir.path()).is_empty());
}

#[test]
fn corrupt_bytes_are_rejected_and_fetched_again() {
    let server = FaultServer::start().unwrap();
    let body = payload(400_000, 4);
    server.serve("/d.bin", body.clone());
    server.push_faults("/d.bin", [Fault::CorruptBytes]);
    let dir = tempfile::tempdir().unwrap();
    let watcher = FinalNameWatcher::start(dir.path().join("d.bin"), body.clone());
    let file = ShardDownloader::new(options()).download(&pinned(&server, "d.bin", &body), dir.path()).unwrap();
    assert!(!watcher.saw_bad_bytes());
    assert_eq!(std::fs::read(&file.path).unwrap(), body);
    let requests = server.requests_for("/d.bin");
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].range, None, "a corrupt partial file is discarded, not resumed");
}

#[test]
fn persistent_corruption_gives_up_and_never_lands_under_the_final_name() {
    let server = FaultServer::start().unwrap();
    let body = payload(200_000, 5);
    server.serve("/e.bin", body.clone());
    server.push_faults("/e.bin", std::iter::repeat_n(Fault::CorruptBytes, 10));
    let dir = tempfile::tempdir().unwrap();
    let watcher = FinalNameWatcher::start(dir.path().join("e.bin"), body.clone());
    let error = ShardDownloader::new(options()).download(&pinned(&server, "e.bin", &body), dir.path()).unwrap_err();
    assert!(!watcher.saw_bad_bytes());
    assert!(matches!(error, DownloadError::GaveUp { attempts: 4, .. }), "{error:?}");
    assert!(matches!(error.root(), DownloadError::ChecksumMismatch { .. }), "{error:?}");
    assert!(error.to_string().contains("sha256 mismatch"), "{error}");
    assert!(names_in(dir.path()).is_empty(), "{:?}", names_in(dir.path()));
}

#[test]
fn lying_content_length_is_caught_either_way() {
    let server = FaultServer::start().unwrap();
    let body = payload(300_000, 6);
    server.serve("/f.bin", body.clone());
    // Announces more than it sends (body ends early), then less than the file (short body).
    server.push_faults("/f.bin", [Fault::LyingContentLength(5_000), Fault::LyingContentLength(-100_000)]);
    let dir = tempfile::tempdir().unwrap();
    let watcher = FinalNameWatcher::start(dir.path().join("f.bin"), body.clone());
    let file = ShardDownloader::new(options()).download(&pinned(&server, "f.bin", &body), dir.path()).unwrap();
    assert!(!watcher.saw_bad_bytes());
    assert_eq!(std::fs::read(&file.path).unwrap(), body);
    assert!(server.requests_for("/f.bin").len() >= 2);

    // Unpinned and no size known anywhere: the short body is caught by the server-announced hash.
    server.serve_with_headers(
        "/g.bin",
        body.clone(),
        vec![("x-checksum-sha256".into(), Sha256Digest::of_bytes(&body).to_string())],
    );
    server.push_faults("/g.bin", [Fault::LyingContentLength(-1_000)]);
    let file = ShardDownloader::new(options()).download(&unpinned(&server, "g.bin"), dir.path()).unwrap();
    assert_eq!(std::fs::read(&file.path).unwrap(), body);
}

#[test]
fn a_stalled_transfer_times_out_and_resumes() {
    let server = FaultServer::start().unwrap();
    let body = payload(100_000, 7);
    server.serve("/h.bin", body.clone());
    server.push_faults("/h.bin", [Fault::Trickle { chunk: 1_000, delay: Duration::from_millis(600) }]);
    let dir = tempfile::tempdir().unwrap();
    let options = DownloadOptions { read_timeout: Duration::from_millis(250), ..options() };
    let started = Instant::now();
    let file = ShardDownloader::new(options).download(&pinned(&server, "h.bin", &body), dir.path()).unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(std::fs::read(&file.path).unwrap(), body);
    let requests = server.requests_for("/h.bin");
    assert_eq!(requests.len(), 2);
    assert!(requests[1].range.is_some(), "the trickled bytes were kept and the download resumed");
}

#[test]
fn a_server_that_ignores_range_restarts_cleanly() {
    let server = FaultServer::start().unwrap();
    let body = payload(250_000, 8);
    server.serve("/i.bin", body.clone());
    server.push_faults("/i.bin", [Fault::DropAfter(50_000), Fault::IgnoreRange]);
    let dir = tempfile::tempdir().unwrap();
    let file = ShardDownloader::new(options()).download(&pinned(&server, "i.bin", &body), dir.path()).unwrap();
    assert_eq!(std::fs::read(&file.path).unwrap(), body);
    let requests = server.requests_for("/i.bin");
    assert_eq!((requests[1].range.is_some(), requests[1].status), (true, 200));
}

#[test]
fn unpinned_files_use_the_checksum_announced_on_a_redirect_like_huggingface() {
    let server = FaultServer::start().unwrap();
    let body = payload(150_000, 9);
    let digest = Sha256Digest::of_bytes(&body);
    server.serve("/cdn/shard_00000.parquet", body.clone());
    server.redirect(
        "/shard_00000.parquet",
        "/cdn/shard_00000.parquet",
        vec![("X-Linked-Etag".into(), format!("\"{digest}\"")), ("X-Linked-Size".into(), body.len().to_string())],
    );
    let dir = tempfile::tempdir().unwrap();
    let ledger = ChecksumLedger::open(&dir.path().join(LEDGER_FILE_NAME)).unwrap();
    let downloader = ShardDownloader::new(options()).with_ledger(ledger);
    let entry = unpinned(&server, "shard_00000.parquet");
    assert_eq!(downloader.probe(&entry.url).unwrap().sha256, Some(digest.clone()));
    let file = downloader.download(&entry, dir.path()).unwrap();
    assert_eq!(file.checksum_origin, ChecksumOrigin::Server);
    assert_eq!(file.sha256, digest);
    let ledger = ChecksumLedger::open(&dir.path().join(LEDGER_FILE_NAME)).unwrap();
    assert_eq!(ledger.get("shard_00000.parquet").unwrap().sha256, digest);

    // A server announcing a sha256 the bytes do not have is never believed.
    let wrong = Sha256Digest::of_bytes(b"something else");
    server.serve("/cdn/shard_00001.parquet", body.clone());
    server.redirect(
        "/shard_00001.parquet",
        "/cdn/shard_00001.parquet",
        vec![("X-Linked-Etag".into(), format!("\"{wrong}\""))],
    );
    let error = downloader.download(&unpinned(&server, "shard_00001.parquet"), dir.path()).unwrap_err();
    assert!(matches!(error.root(), DownloadError::ChecksumMismatch { .. }), "{error:?}");
    assert!(!dir.path().join("shard_00001.parquet").exists());
}

#[test]
fn unpinned_files_without_announced_checksum_are_pinned_in_the_ledger_on_first_download() {
    let server = FaultServer::start().unwrap();
    let body = payload(50_000, 10);
    server.serve("/j.bin", body.clone());
    let dir = tempfile::tempdir().unwrap();
    let ledger_path = dir.path().join(LEDGER_FILE_NAME);
    let downloader = ShardDownloader::new(options()).with_ledger(ChecksumLedger::open(&ledger_path).unwrap());
    let file = downloader.download(&unpinned(&server, "j.bin"), dir.path()).unwrap();
    assert_eq!(file.checksum_origin, ChecksumOrigin::FirstDownload);

    // The upstream file changes: the ledger catches it on re-download and on verify.
    std::fs::remove_file(&file.path).unwrap();
    server.serve("/j.bin", payload(50_000, 11));
    let downloader = ShardDownloader::new(options()).with_ledger(ChecksumLedger::open(&ledger_path).unwrap());
    let error = downloader.download(&unpinned(&server, "j.bin"), dir.path()).unwrap_err();
    assert!(
        matches!(error.root(), DownloadError::ChecksumMismatch { expected_from: "checksum ledger", .. }),
        "{error:?}"
    );
    assert!(!file.path.exists());
}

#[test]
fn verify_rehashes_and_repairs_damaged_files() {
    let server = FaultServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bodies: Vec<_> = (0..3).map(|i| payload(40_000, 20 + i)).collect();
    let entries: Vec<_> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            server.serve(&format!("/v{i}.bin"), body.clone());
            pinned(&server, &format!("v{i}.bin"), body)
        })
        .collect();
    let downloader = ShardDownloader::new(options());
    downloader.download_all(&entries, dir.path()).unwrap();
    let mut damaged = bodies[1].clone();
    damaged[100] ^= 1;
    std::fs::write(dir.path().join("v1.bin"), &damaged).unwrap();
    std::fs::remove_file(dir.path().join("v2.bin")).unwrap();
    let report = downloader.verify(&entries, dir.path());
    assert!(report.is_ok(), "{:?}", report.failed);
    assert_eq!(report.intact, ["v0.bin"]);
    assert_eq!(report.repaired, ["v1.bin", "v2.bin"]);
    for (i, body) in bodies.iter().enumerate() {
        assert_eq!(&std::fs::read(dir.path().join(format!("v{i}.bin"))).unwrap(), body);
    }
}

#[test]
fn first_entries_are_fetched_first_and_the_rest_continue_in_the_background() {
    let server = FaultServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let entries: Vec<_> = (0..6)
        .map(|i| {
            let body = payload(30_000, 40 + i);
            server.serve(&format!("/shard_{i:05}.parquet"), body.clone());
            pinned(&server, &format!("shard_{i:05}.parquet"), &body)
        })
        .collect();
    let downloader = ShardDownloader::new(DownloadOptions { parallelism: 1, ..options() });
    let results = downloader.start(entries.clone(), dir.path().to_path_buf()).join();
    let names: Vec<_> = results.iter().map(|r| r.as_ref().unwrap().name.clone()).collect();
    assert_eq!(names, entries.iter().map(|e| e.name.clone()).collect::<Vec<_>>(), "one result per entry, in order");
    let order: Vec<_> = server.requests().into_iter().map(|r| r.path).collect();
    let expected: Vec<_> = (0..6).map(|i| format!("/shard_{i:05}.parquet")).collect();
    assert_eq!(order, expected, "one worker takes entries in manifest order");
}

#[test]
fn a_cancelled_download_keeps_its_partial_file_and_resumes_with_range() {
    let server = FaultServer::start().unwrap();
    let body = payload(400_000, 12);
    server.serve("/k.bin", body.clone());
    server.push_faults("/k.bin", [Fault::Trickle { chunk: 4_000, delay: Duration::from_millis(30) }]);
    let dir = tempfile::tempdir().unwrap();
    let entry = pinned(&server, "k.bin", &body);
    let partial = dir.path().join("k.bin.partial");
    let handle = ShardDownloader::new(options()).start(vec![entry.clone()], dir.path().to_path_buf());
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0) < 20_000 {
        assert!(Instant::now() < deadline, "trickle never reached the partial file");
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(handle); // cancels and joins
    let kept = std::fs::metadata(&partial).unwrap().len();
    assert!((20_000..400_000).contains(&kept));
    assert!(!dir.path().join("k.bin").exists());

    let file = ShardDownloader::new(options()).download(&entry, dir.path()).unwrap();
    assert_eq!(file.status, FileStatus::Downloaded { attempts: 1, resumed_from: kept });
    assert_eq!(std::fs::read(&file.path).unwrap(), body);
    assert_eq!(server.requests_for("/k.bin").last().unwrap().range, Some(format!("bytes={kept}-")));
}

const CHILD_URL: &str = "NANOCHAT_TEST_CHILD_URL";
const CHILD_DIR: &str = "NANOCHAT_TEST_CHILD_DIR";
const CHILD_SHA: &str = "NANOCHAT_TEST_CHILD_SHA";
const CHILD_SIZE: &str = "NANOCHAT_TEST_CHILD_SIZE";

/// Runs only as the child of `a_killed_process_resumes_from_its_partial_file`.
#[test]
#[ignore = "child process of a_killed_process_resumes_from_its_partial_file"]
fn child_download_process() {
    let (Ok(url), Ok(dir), Ok(sha), Ok(size)) =
        (std::env::var(CHILD_URL), std::env::var(CHILD_DIR), std::env::var(CHILD_SHA), std::env::var(CHILD_SIZE))
    else {
        return;
    };
    let entry = ManifestEntry {
        name: "killed.bin".into(),
        url,
        size: Some(size.parse().unwrap()),
        sha256: Checksum::Pinned(Sha256Digest::parse(&sha).unwrap()),
        license: "test data".into(),
    };
    let _ = ShardDownloader::new(options()).download(&entry, Path::new(&dir));
}

#[test]
fn a_killed_process_resumes_from_its_partial_file() {
    let server = FaultServer::start().unwrap();
    let body = payload(300_000, 13);
    server.serve("/killed.bin", body.clone());
    server.push_faults("/killed.bin", [Fault::Trickle { chunk: 5_000, delay: Duration::from_millis(50) }]);
    let dir = tempfile::tempdir().unwrap();
    let entry = pinned(&server, "killed.bin", &body);
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_download_process", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_URL, &entry.url)
        .env(CHILD_DIR, dir.path())
        .env(CHILD_SHA, Sha256Digest::of_bytes(&body).to_string())
        .env(CHILD_SIZE, body.len().to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let partial = dir.path().join("killed.bin.partial");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0) < 30_000 {
        assert!(Instant::now() < deadline, "child never wrote its partial file");
        assert!(child.try_wait().unwrap().is_none(), "child exited early");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let kept = std::fs::metadata(&partial).unwrap().len();
    assert!(kept > 0 && kept < body.len() as u64);
    assert!(!dir.path().join("killed.bin").exists());

    let file = ShardDownloader::new(options()).download(&entry, dir.path()).unwrap();
    assert_eq!(std::fs::read(&file.path).unwrap(), body);
    let last = server.requests_for("/killed.bin").last().cloned().unwrap();
    assert_eq!(last.range, Some(format!("bytes={kept}-")), "resumed with a Range request");
    assert_eq!(last.status, 206);
    assert_eq!(names_in(dir.path()), ["killed.bin"]);
}

#[test]
fn unpinned_manifests_are_pinned_from_server_announcements_or_the_ledger() {
    use nanochat::download::{pin_from_ledger, pin_from_server, DataManifest};
    let server = FaultServer::start().unwrap();
    let body = payload(20_000, 30);
    let digest = Sha256Digest::of_bytes(&body);
    server.serve("/cdn/p0.bin", body.clone());
    server.redirect(
        "/p0.bin",
        "/cdn/p0.bin",
        vec![("X-Linked-Etag".into(), format!("\"{digest}\"")), ("X-Linked-Size".into(), "20000".into())],
    );
    server.serve("/p1.bin", body.clone());
    let mut manifest = DataManifest::new(
        "test",
        vec![unpinned(&server, "p0.bin"), unpinned(&server, "p1.bin"), unpinned(&server, "p2.bin")],
    )
    .unwrap();
    let report = pin_from_server(&mut manifest, &ShardDownloader::new(options()));
    assert_eq!(report.pinned, ["p0.bin"]);
    assert_eq!(report.unpinned.len(), 2);
    assert!(report.unpinned[1].1.contains("404"), "{:?}", report.unpinned);
    assert_eq!(manifest.files[0].sha256, Checksum::Pinned(digest.clone()));
    assert_eq!(manifest.files[0].size, Some(20_000));

    // p1 announces nothing: a download records it in the ledger, and the ledger pins it.
    let dir = tempfile::tempdir().unwrap();
    let ledger_path = dir.path().join(LEDGER_FILE_NAME);
    let downloader = ShardDownloader::new(options()).with_ledger(ChecksumLedger::open(&ledger_path).unwrap());
    downloader.download(&manifest.files[1], dir.path()).unwrap();
    let report = pin_from_ledger(&mut manifest, &ChecksumLedger::open(&ledger_path).unwrap());
    assert_eq!(report.pinned, ["p1.bin"]);
    assert_eq!(manifest.files[1].sha256, Checksum::Pinned(digest));
    assert_eq!(manifest.unpinned().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["p2.bin"]);
    DataManifest::parse(&manifest.to_toml_string().unwrap()).unwrap();
}
