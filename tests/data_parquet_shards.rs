//! Shard round trips (our writer ↔ our reader, and ↔ pyarrow when available), row-group
//! boundaries, corrupt files, directory listing and the train/val split (NANOCHAT.md §2.1, §2.2).
use std::path::{Path, PathBuf};
use std::process::Command;

use nanochat::data::{
    list_shards, shards_for, split_shards, write_shard, ParquetShard, RowGroupIter, ShardError, ShardWriterOptions,
    Split,
};

fn documents(count: usize) -> Vec<String> {
    (0..count)
        .map(|i| match i % 5 {
            0 => String::new(),
            1 => format!("Document {i}: plain ASCII text.\nSecond line."),
            2 => format!("Unicode {i}: café, naïve, 東京, emoji 🚀, Ελληνικά"),
            3 => "x".repeat(i * 7),
            _ => format!("{i} ").repeat(50),
        })
        .collect()
}

fn read_all(path: &Path) -> Vec<Vec<String>> {
    let shard = ParquetShard::open(path).unwrap();
    shard.row_groups().collect::<Result<_, _>>().unwrap()
}

#[test]
fn written_documents_read_back_identically_with_row_group_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shard_00000.parquet");
    let docs = documents(2_500);
    let summary = write_shard(&path, &docs, ShardWriterOptions::default()).unwrap();
    assert_eq!((summary.documents, summary.row_groups), (2_500, 3));
    assert_eq!(summary.chars, docs.iter().map(|d| d.chars().count() as u64).sum::<u64>());
    let groups = read_all(&path);
    assert_eq!(groups.iter().map(Vec::len).collect::<Vec<_>>(), [1024, 1024, 452]);
    assert_eq!(groups.concat(), docs);
    assert_eq!(ParquetShard::open(&path).unwrap().num_documents(), 2_500);
    assert!(!dir.path().join("shard_00000.parquet.partial").exists());
}

#[test]
fn writing_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let docs = documents(1_500);
    let options = ShardWriterOptions { docs_per_row_group: 100, ..ShardWriterOptions::default() };
    write_shard(&dir.path().join("a.parquet"), &docs, options.clone()).unwrap();
    write_shard(&dir.path().join("b.parquet"), &docs, options).unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("a.parquet")).unwrap(),
        std::fs::read(dir.path().join("b.parquet")).unwrap()
    );
}

#[test]
fn truncated_or_garbage_files_give_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("good.parquet");
    write_shard(&path, &documents(3_000), ShardWriterOptions::default()).unwrap();
    let bytes = std::fs::read(&path).unwrap();

    let truncated = dir.path().join("truncated.parquet");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let error = ParquetShard::open(&truncated).err().unwrap();
    assert!(matches!(error, ShardError::Corrupt { .. }), "{error:?}");
    assert!(error.to_string().contains("truncated.parquet") && error.to_string().contains("download it again"));

    let garbage = dir.path().join("garbage.parquet");
    std::fs::write(&garbage, b"PAR1 this is not parquet at all PAR1").unwrap();
    assert!(matches!(ParquetShard::open(&garbage), Err(ShardError::Corrupt { .. })));

    // Footer intact, a data page damaged: opening works, reading that row group fails cleanly.
    let mut damaged = bytes.clone();
    for byte in &mut damaged[200..5_000] {
        *byte = !*byte;
    }
    let damaged_path = dir.path().join("damaged.parquet");
    std::fs::write(&damaged_path, &damaged).unwrap();
    let shard = ParquetShard::open(&damaged_path).unwrap();
    assert!(shard.read_row_group(0).is_err());
    assert!(matches!(shard.read_row_group(7), Err(ShardError::NoSuchRowGroup { .. })));
}

#[test]
fn listing_is_sorted_skips_partial_files_and_the_last_shard_is_validation() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["shard_00002.parquet", "shard_00000.parquet", "shard_00001.parquet"] {
        write_shard(&dir.path().join(name), &documents(10), ShardWriterOptions::default()).unwrap();
    }
    for name in ["shard_00003.parquet.partial", "shard_00004.parquet.tmp", ".hidden.parquet", "notes.txt"] {
        std::fs::write(dir.path().join(name), b"junk").unwrap();
    }
    let names = |paths: &[PathBuf]| -> Vec<String> {
        paths.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect()
    };
    let listed = list_shards(dir.path()).unwrap();
    assert_eq!(names(&listed), ["shard_00000.parquet", "shard_00001.parquet", "shard_00002.parquet"]);
    let (train, val) = split_shards(dir.path()).unwrap();
    assert_eq!(names(&train), ["shard_00000.parquet", "shard_00001.parquet"]);
    assert_eq!(val.file_name().unwrap(), "shard_00002.parquet");
    assert_eq!(names(&shards_for(dir.path(), Split::Val).unwrap()), ["shard_00002.parquet"]);

    let lonely = tempfile::tempdir().unwrap();
    write_shard(&lonely.path().join("shard_00000.parquet"), &documents(3), ShardWriterOptions::default()).unwrap();
    assert!(matches!(split_shards(lonely.path()), Err(ShardError::TooFewShards { .. })));
}

#[test]
fn row_group_iteration_strides_like_ranks() {
    let dir = tempfile::tempdir().unwrap();
    let options = ShardWriterOptions { docs_per_row_group: 10, ..ShardWriterOptions::default() };
    let docs: Vec<String> = (0..50).map(|i| format!("doc {i}")).collect();
    write_shard(&dir.path().join("a.parquet"), &docs[..30], options.clone()).unwrap();
    write_shard(&dir.path().join("b.parquet"), &docs[30..], options).unwrap();
    let shards = list_shards(dir.path()).unwrap();
    let all: Vec<_> = RowGroupIter::all(shards.clone()).map(Result::unwrap).collect();
    assert_eq!(all.iter().flat_map(|b| b.documents.clone()).collect::<Vec<_>>(), docs);
    let rank1: Vec<_> =
        RowGroupIter::new(shards, 1, 2).map(|b| b.map(|b| (b.shard_index, b.row_group)).unwrap()).collect();
    assert_eq!(rank1, [(0, 1), (1, 1)]);
}

/// The project venv's Python (make test-setup installs pyarrow from manifests/python/test.lock).
fn python_with_pyarrow() -> PathBuf {
    std::env::var_os("NANOCHAT_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"))
}

#[test]
fn pyarrow_reads_our_shards_and_we_read_pyarrow_shards() {
    let python = python_with_pyarrow();
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("ours.parquet");
    let theirs = dir.path().join("theirs.parquet");
    let docs = documents(2_100);
    write_shard(&ours, &docs, ShardWriterOptions::default()).unwrap();
    let docs_json = dir.path().join("docs.json");
    std::fs::write(&docs_json, serde_json::to_string(&docs).unwrap()).unwrap();
    // Read ours, check content and layout; write theirs exactly as NANOCHAT.md §2.1 describes.
    let script = r#"
import json, sys
import pyarrow as pa, pyarrow.parquet as pq
ours, theirs, docs_path = sys.argv[1:4]
docs = json.load(open(docs_path, encoding="utf-8"))
pf = pq.ParquetFile(ours)
assert pf.schema_arrow.names == ["text"], pf.schema_arrow
assert [pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)] == [1024, 1024, 52]
assert pf.metadata.row_group(0).column(0).compression == "ZSTD"
got = [t for i in range(pf.num_row_groups) for t in pf.read_row_group(i).column("text").to_pylist()]
assert got == docs, "content differs"
table = pa.Table.from_pydict({"text": docs[::-1]})
pq.write_table(table, theirs, row_group_size=1024, use_dictionary=False, compression="zstd",
               compression_level=3, write_statistics=False)
print("ok")
"#;
    let output = Command::new(&python).args(["-c", script]).arg(&ours).arg(&theirs).arg(&docs_json).output().unwrap();
    assert!(output.status.success(), "pyarrow: {}", String::from_utf8_lossy(&output.stderr));
    let groups = read_all(&theirs);
    assert_eq!(groups.iter().map(Vec::len).collect::<Vec<_>>(), [1024, 1024, 52]);
    let mut reversed = docs.clone();
    reversed.reverse();
    assert_eq!(groups.concat(), reversed);
}
