//! The smoke-corpus builder end to end on small synthetic sdists served from 127.0.0.1: the real
//! download path, file selection, splitting, deterministic packing (two builds, identical bytes),
//! recorded-shard checks; and the real manifest parses and pins every package.
use std::path::Path;

#[path = "support/fault_server.rs"]
mod fault_server;
use fault_server::FaultServer;
use nanochat::data::{list_shards, ParquetShard};
use nanochat::download::bundled_manifests::bundled_smoke_corpus;
use nanochat::download::{
    CorpusLayout, DownloadError, DownloadOptions, ExpectedShard, Sha256Digest, ShardDownloader, SmokeCorpusManifest,
    SourcePackage,
};
use nanochat::smoke::{build_smoke_corpus, smoke_corpus_is_present, SmokeCorpusError};

fn tar_gz(files: &[(String, String)]) -> Vec<u8> {
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut builder = tar::Builder::new(encoder);
    for (path, text) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, path, text.as_bytes()).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

fn section(title: &str, words: usize) -> String {
    let body: Vec<String> = (0..words).map(|i| format!("{title}-word{i}")).collect();
    format!("{title}\n{}\n\nThis is :func:`~pkg.mod.{title}` prose. {}\n\n", "=".repeat(title.len()), body.join(" "))
}

fn package(server: &FaultServer, name: &str, archive: &[u8]) -> SourcePackage {
    let filename = format!("{name}-1.0.tar.gz");
    server.serve(&format!("/{filename}"), archive.to_vec());
    SourcePackage {
        name: name.into(),
        version: "1.0".into(),
        description: "test".into(),
        url: server.url(&format!("/{filename}")),
        filename,
        size: archive.len() as u64,
        sha256: Sha256Digest::of_bytes(archive),
        license: "CC0".into(),
        license_file: "LICENSE".into(),
        root: format!("{name}-1.0"),
        include: vec!["docs/".into()],
        extensions: vec!["rst".into(), "md".into()],
        exclude: vec!["docs/skip/".into()],
    }
}

fn manifest(server: &FaultServer) -> SmokeCorpusManifest {
    let mut alpha_files = vec![("alpha-1.0/LICENSE".to_string(), "CC0".to_string())];
    for f in 0..12 {
        let text: String = (0..5).map(|s| section(&format!("alpha{f}s{s}"), 40)).collect();
        alpha_files.push((format!("alpha-1.0/docs/topic{f:02}.rst"), text));
    }
    alpha_files.push(("alpha-1.0/docs/skip/secret.rst".into(), section("SECRETSKIPPED", 50)));
    alpha_files.push(("alpha-1.0/src/code.py".into(), "print('CODENOTDOCS')\n".repeat(50)));
    let mut beta_files = vec![("beta-1.0/LICENSE".to_string(), "CC0".to_string())];
    for f in 0..6 {
        let text: String =
            (0..4).map(|s| format!("# beta{f}s{s}\n\n{}\n\n", "Markdown prose here. ".repeat(30))).collect();
        beta_files.push((format!("beta-1.0/docs/guide{f}.md"), text));
    }
    SmokeCorpusManifest {
        corpus: CorpusLayout { seed: 42, shards: 3, docs_per_row_group: 8, min_doc_chars: 200 },
        packages: vec![package(server, "alpha", &tar_gz(&alpha_files)), package(server, "beta", &tar_gz(&beta_files))],
        shards: Vec::new(),
    }
}

fn options() -> DownloadOptions {
    DownloadOptions { parallelism: 2, ..DownloadOptions::default() }
}

fn all_documents(dir: &Path) -> Vec<String> {
    list_shards(dir)
        .unwrap()
        .iter()
        .flat_map(|path| ParquetShard::open(path).unwrap().row_groups().map(Result::unwrap).collect::<Vec<_>>())
        .flatten()
        .collect()
}

#[test]
fn builds_deterministic_shards_from_sdists() {
    let server = FaultServer::start().unwrap();
    let mut manifest = manifest(&server);
    let work = tempfile::tempdir().unwrap();
    let (cache, first, second) = (work.path().join("cache"), work.path().join("one"), work.path().join("two"));
    let downloader = ShardDownloader::new(options());
    let report = build_smoke_corpus(&manifest, &cache, &first, Some(&downloader)).unwrap();

    assert_eq!(report.sources.iter().map(|s| s.files).collect::<Vec<_>>(), [12, 6]);
    assert_eq!(report.shards.len(), 3);
    assert_eq!(report.total_documents, report.shards.iter().map(|s| s.documents).sum::<usize>());
    assert_eq!(report.total_chars, report.shards.iter().map(|s| s.chars).sum::<u64>());
    let documents = all_documents(&first);
    assert_eq!(documents.len(), report.total_documents);
    let text = documents.join("\n");
    assert!(!text.contains("SECRETSKIPPED") && !text.contains("CODENOTDOCS"), "excluded files stay out");
    assert!(!text.contains(":func:") && text.contains("This is alpha0s0 prose."), "markup is removed");
    assert!(text.contains("# beta3s1"));
    assert!(documents.iter().all(|d| !d.trim().is_empty()));
    // Shuffled: the first documents do not simply follow archive order.
    assert!(!documents[0].starts_with("alpha00s0") || !documents[1].starts_with("alpha00s1"));
    for shard in &report.shards {
        let shard_file = ParquetShard::open(&first.join(&shard.name)).unwrap();
        assert!(shard_file.row_groups().all(|g| g.unwrap().len() <= 8));
    }

    // Building again, from the cache only, gives identical bytes; recording the shards makes a
    // third build check itself, and detects a different result.
    let again = build_smoke_corpus(&manifest, &cache, &second, None).unwrap();
    assert_eq!(again, report);
    for shard in &report.shards {
        assert_eq!(std::fs::read(first.join(&shard.name)).unwrap(), std::fs::read(second.join(&shard.name)).unwrap());
    }
    manifest.shards = report.shards.clone();
    assert!(smoke_corpus_is_present(&manifest, &first));
    build_smoke_corpus(&manifest, &cache, &work.path().join("three"), None).unwrap();
    manifest.shards[1] = ExpectedShard { sha256: Sha256Digest::of_bytes(b"other"), ..manifest.shards[1].clone() };
    assert!(!smoke_corpus_is_present(&manifest, &first));
    let error = build_smoke_corpus(&manifest, &cache, &work.path().join("four"), None).unwrap_err();
    assert!(matches!(error, SmokeCorpusError::NotReproduced { .. }), "{error:?}");
}

#[test]
fn a_tampered_sdist_is_refused() {
    let server = FaultServer::start().unwrap();
    let mut manifest = manifest(&server);
    manifest.packages[1].sha256 = Sha256Digest::of_bytes(b"not the archive");
    let work = tempfile::tempdir().unwrap();
    let downloader = ShardDownloader::new(DownloadOptions {
        retry: nanochat::download::RetryPolicy {
            max_attempts: 2,
            initial_delay: std::time::Duration::from_millis(5),
            ..Default::default()
        },
        ..options()
    });
    let error = build_smoke_corpus(&manifest, &work.path().join("cache"), &work.path().join("out"), Some(&downloader))
        .unwrap_err();
    assert!(
        matches!(&error, SmokeCorpusError::Download(e) if matches!(e.root(), DownloadError::ChecksumMismatch { .. })),
        "{error:?}"
    );
    assert!(!work.path().join("cache/beta-1.0.tar.gz").exists());
}

#[test]
fn too_little_text_for_the_shard_count_is_a_clear_error() {
    let server = FaultServer::start().unwrap();
    let mut manifest = manifest(&server);
    manifest.corpus.docs_per_row_group = 10_000;
    let work = tempfile::tempdir().unwrap();
    let downloader = ShardDownloader::new(options());
    let error =
        build_smoke_corpus(&manifest, &work.path().join("c"), &work.path().join("o"), Some(&downloader)).unwrap_err();
    assert!(matches!(error, SmokeCorpusError::TooLittleText { shards: 3, .. }), "{error:?}");
}

#[test]
fn the_real_manifest_pins_every_package_and_records_its_shards() {
    let manifest = bundled_smoke_corpus().unwrap();
    assert!(manifest.packages.len() >= 10);
    for package in &manifest.packages {
        assert!(package.url.starts_with("https://files.pythonhosted.org/"), "{}", package.url);
        assert!(package.url.ends_with(&package.filename));
        assert!(package.filename.ends_with(".tar.gz"), "sdists only: {}", package.filename);
        assert!(package.filename.starts_with(&format!("{}-{}", package.name, package.version)));
        assert!(!package.license.is_empty() && package.size > 0);
    }
    assert!(manifest.corpus.shards >= 5, "the smoke preset needs 4 train shards and a val shard");
    assert_eq!(manifest.shards.len(), manifest.corpus.shards, "built shards are recorded");
    assert!(manifest.shards.iter().map(|s| s.chars).sum::<u64>() >= 20_000_000);
}
