//! Streaming, parallel chunk counting — step 1 of rustbpe training (NANOCHAT.md §1.3): every
//! document is split with the nanochat pattern and each chunk's occurrences are counted.
//! Documents are consumed in batches (at most `BATCH_DOCS` documents or `BATCH_BYTES` bytes),
//! so memory holds the unique chunks plus about three batches, never the whole text. Each
//! rayon worker counts into its own table (chunk bytes in an arena, a hash table of
//! offsets), and the tables are merged once at the end.

use std::sync::mpsc::sync_channel;
use std::sync::Mutex;

use hashbrown::{DefaultHashBuilder, HashTable};
use rayon::prelude::*;
use std::hash::BuildHasher;

use super::chunk_splitter::split_chunks;
use super::error::{Result, TokenizerError};

/// Documents per batch; rustbpe's default `buffer_size` (NANOCHAT.md §1.3).
pub const BATCH_DOCS: usize = 8192;
/// Bytes per batch, so that a batch of huge documents stays small.
pub const BATCH_BYTES: usize = 32 << 20;

#[derive(Clone, Copy)]
struct Entry {
    offset: usize,
    len: u32,
    count: u64,
}

/// Unique chunks with their counts: byte strings stored back to back in an arena.
#[derive(Default)]
struct CountTable {
    arena: Vec<u8>,
    table: HashTable<Entry>,
    hasher: DefaultHashBuilder,
}

impl CountTable {
    #[inline]
    fn add(&mut self, chunk: &[u8], count: u64) {
        let CountTable { arena, table, hasher } = self;
        let hash = hasher.hash_one(chunk);
        let eq = |e: &Entry| &arena[e.offset..e.offset + e.len as usize] == chunk;
        if let Some(e) = table.find_mut(hash, eq) {
            e.count += count;
            return;
        }
        let offset = arena.len();
        arena.extend_from_slice(chunk);
        let entry = Entry { offset, len: chunk.len() as u32, count };
        table.insert_unique(hash, entry, |e| hasher.hash_one(&arena[e.offset..e.offset + e.len as usize]));
    }

    fn merge_from(&mut self, other: CountTable) {
        for e in other.table.iter() {
            self.add(&other.arena[e.offset..e.offset + e.len as usize], e.count);
        }
    }
}

/// The counted chunks, ready to become BPE "words".
pub struct ChunkCounts {
    arena: Vec<u8>,
    entries: Vec<(usize, u32, u64)>,
}

impl ChunkCounts {
    /// Number of unique chunks.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Total bytes of the unique chunks.
    pub fn unique_bytes(&self) -> usize {
        self.arena.len()
    }

    /// (chunk bytes, count) pairs, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], u64)> + '_ {
        self.entries.iter().map(|&(o, l, c)| (&self.arena[o..o + l as usize], c))
    }

    /// Builds counts from explicit (chunk, count) pairs; duplicates are summed.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a [u8], u64)>) -> Self {
        let mut t = CountTable::default();
        for (chunk, count) in pairs {
            t.add(chunk, count);
        }
        Self::from_table(t)
    }

    fn from_table(t: CountTable) -> Self {
        let entries = t.table.iter().filter(|e| e.count > 0).map(|e| (e.offset, e.len, e.count)).collect();
        ChunkCounts { arena: t.arena, entries }
    }
}

/// Counts chunks of a stream of documents, in parallel on the rayon pool.
pub struct ChunkCounter {
    shards: Vec<Mutex<CountTable>>,
    documents: u64,
    bytes: u64,
}

impl Default for ChunkCounter {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkCounter {
    pub fn new() -> Self {
        // One table per rayon worker, plus one for calls from outside the pool.
        let shards = (0..rayon::current_num_threads() + 1).map(|_| Mutex::new(CountTable::default())).collect();
        ChunkCounter { shards, documents: 0, bytes: 0 }
    }

    /// Documents counted so far.
    pub fn documents(&self) -> u64 {
        self.documents
    }

    /// UTF-8 bytes counted so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    fn count_batch<S: AsRef<str> + Sync>(shards: &[Mutex<CountTable>], batch: &[S]) -> Result<()> {
        batch.par_iter().try_for_each(|doc| {
            let slot = rayon::current_thread_index().unwrap_or(shards.len() - 1).min(shards.len() - 1);
            let mut table =
                shards[slot].lock().map_err(|_| TokenizerError::Input("a counting thread panicked".into()))?;
            for chunk in split_chunks(doc.as_ref()) {
                table.add(chunk.as_bytes(), 1);
            }
            Ok(())
        })
    }

    /// Counts the chunks of every document of `docs`, consuming it batch by batch. Reading
    /// the next batch (on the calling thread) overlaps with counting the previous one.
    pub fn count_documents<I, S>(&mut self, docs: I) -> Result<()>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str> + Send + Sync,
    {
        let shards = &self.shards;
        let mut documents = 0u64;
        let mut bytes = 0u64;
        let result = std::thread::scope(|scope| -> Result<()> {
            let (tx, rx) = sync_channel::<Vec<S>>(1);
            let worker = scope.spawn(move || -> Result<()> {
                for batch in rx {
                    Self::count_batch(shards, &batch)?;
                }
                Ok(())
            });
            let mut batch = Vec::with_capacity(BATCH_DOCS);
            let mut batch_bytes = 0usize;
            let mut send_ok = true;
            for doc in docs {
                let len = doc.as_ref().len();
                batch_bytes += len;
                bytes += len as u64;
                documents += 1;
                batch.push(doc);
                if batch.len() >= BATCH_DOCS || batch_bytes >= BATCH_BYTES {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_DOCS));
                    batch_bytes = 0;
                    if tx.send(full).is_err() {
                        send_ok = false; // the worker stopped on an error; it reports it below
                        break;
                    }
                }
            }
            if send_ok && !batch.is_empty() {
                let _ = tx.send(batch);
            }
            drop(tx);
            worker.join().map_err(|_| TokenizerError::Input("the counting thread panicked".into()))?
        });
        self.documents += documents;
        self.bytes += bytes;
        result
    }

    /// Counts one document on the calling thread (no parallelism).
    pub fn count_text(&mut self, text: &str) {
        self.documents += 1;
        self.bytes += text.len() as u64;
        if let Some(last) = self.shards.last_mut() {
            let table = last.get_mut().unwrap_or_else(|p| p.into_inner());
            for chunk in split_chunks(text) {
                table.add(chunk.as_bytes(), 1);
            }
        }
    }

    /// Merges the per-thread tables into the final counts.
    pub fn finish(self) -> ChunkCounts {
        let mut tables: Vec<CountTable> =
            self.shards.into_iter().map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner())).collect();
        tables.sort_by_key(|t| std::cmp::Reverse(t.table.len()));
        let mut iter = tables.into_iter();
        let mut merged = iter.next().unwrap_or_default();
        for t in iter {
            merged.merge_from(t);
        }
        ChunkCounts::from_table(merged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_chunks_across_batches_and_threads() {
        let docs: Vec<String> = (0..20_000).map(|i| format!("hello world {}", i % 7)).collect();
        let mut counter = ChunkCounter::new();
        counter.count_documents(docs.iter().map(|s| s.as_str())).unwrap();
        counter.count_text("hello again");
        assert_eq!(counter.documents(), 20_001);
        let counts = counter.finish();
        let map: std::collections::HashMap<&[u8], u64> = counts.iter().collect();
        assert_eq!(map[&b"hello"[..]], 20_001);
        assert_eq!(map[&b" world"[..]], 20_000);
        assert_eq!(map[&b" again"[..]], 1);
        assert_eq!(map[&b"3"[..]], (0..20_000).filter(|i| i % 7 == 3).count() as u64);
        assert_eq!(counts.len(), 3 + 7 + 1);
    }
}
