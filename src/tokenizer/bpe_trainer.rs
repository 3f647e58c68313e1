//! `BpeTrainer`: byte-level BPE training that yields exactly rustbpe's merges (NANOCHAT.md
//! §1.3) for the same text and vocab size: chunks are counted (see `chunk_counter`), each
//! unique chunk is a "word" of byte ids weighted by its count, and every step merges the pair
//! with the highest total count (ties: the smaller `(left, right)`), non-overlapping and left
//! to right inside each word, until `vocab_size - 256` merges are done.
//!
//! Same selection rule as rustbpe (max-heap with lazy refresh: counts of existing pairs only
//! go down, new pairs always contain the new token), different bookkeeping for speed: words
//! live in one flat buffer, each pair keeps a sorted list of the words that may contain it,
//! the count deltas of one merge are gathered in dense per-token arrays (all changed pairs
//! are `(x, a)`, `(x, new)`, `(b, y)`, `(new, y)` for a merge `(a, b) -> new`), and merges
//! that touch many words are split across the rayon pool by word ranges.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use hashbrown::HashMap;
use rayon::prelude::*;

use super::chunk_counter::{ChunkCounter, ChunkCounts};
use super::error::{Result, TokenizerError};
use super::merges::Merges;

/// Merges whose word list is at least this long are processed in parallel.
const PARALLEL_MERGE_MIN_WORDS: usize = 2048;

/// Reported to the progress callback after every merge.
#[derive(Clone, Copy, Debug)]
pub struct TrainProgress {
    pub merges_done: u32,
    pub total_merges: u32,
    pub pair: (u32, u32),
    pub new_id: u32,
    pub count: u64,
}

/// Streaming BPE trainer: feed documents, then train.
pub struct BpeTrainer {
    vocab_size: u32,
    counter: ChunkCounter,
}

impl BpeTrainer {
    /// `vocab_size` counts the 256 byte tokens and the merges, not the special tokens
    /// (nanochat passes `vocab_size - 9`, NANOCHAT.md §1.3).
    pub fn new(vocab_size: u32) -> Result<Self> {
        if vocab_size < 256 {
            return Err(TokenizerError::VocabTooSmall { requested: vocab_size });
        }
        Ok(BpeTrainer { vocab_size, counter: ChunkCounter::new() })
    }

    /// Splits and counts a stream of documents (consumed incrementally, in batches).
    pub fn count_documents<I, S>(&mut self, docs: I) -> Result<()>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str> + Send + Sync,
    {
        self.counter.count_documents(docs)
    }

    /// Counts one document on the calling thread.
    pub fn count_text(&mut self, text: &str) {
        self.counter.count_text(text)
    }

    /// Documents and UTF-8 bytes counted so far.
    pub fn counted(&self) -> (u64, u64) {
        (self.counter.documents(), self.counter.bytes())
    }

    /// Runs the merge loop on everything counted so far.
    pub fn train(self, progress: impl FnMut(&TrainProgress)) -> Result<Merges> {
        let counts = self.counter.finish();
        Ok(train_from_counts(&counts, self.vocab_size, progress))
    }
}

/// All words in one buffer; word `w` is `ids[start[w]..start[w] + len[w]]`.
struct Words {
    ids: Vec<u32>,
    start: Vec<usize>,
    len: Vec<u32>,
    count: Vec<i64>,
}

impl Words {
    fn from_counts(counts: &ChunkCounts) -> Words {
        let mut words = Words {
            ids: Vec::with_capacity(counts.unique_bytes()),
            start: Vec::with_capacity(counts.len()),
            len: Vec::with_capacity(counts.len()),
            count: Vec::with_capacity(counts.len()),
        };
        for (chunk, count) in counts.iter() {
            // Single-byte chunks hold no pair and never change.
            if chunk.len() < 2 || count == 0 {
                continue;
            }
            words.start.push(words.ids.len());
            words.len.push(chunk.len() as u32);
            words.count.push(count as i64);
            words.ids.extend(chunk.iter().map(|&b| b as u32));
        }
        words
    }
}

#[inline(always)]
fn pair_key(left: u32, right: u32) -> u64 {
    ((left as u64) << 32) | right as u64
}

#[inline(always)]
fn unpack_key(key: u64) -> (u32, u32) {
    ((key >> 32) as u32, key as u32)
}

/// Heap entry; ordered by count, then by the smaller pair.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Job {
    count: i64,
    key: u64,
    pid: u32,
}

impl Ord for Job {
    fn cmp(&self, other: &Self) -> Ordering {
        self.count.cmp(&other.count).then_with(|| other.key.cmp(&self.key))
    }
}

impl PartialOrd for Job {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Every pair ever seen: current total count and the sorted words that may contain it.
#[derive(Default)]
struct PairTable {
    index: HashMap<u64, u32>,
    count: Vec<i64>,
    words: Vec<Vec<u32>>,
}

impl PairTable {
    fn insert(&mut self, key: u64, count: i64, words: Vec<u32>) -> u32 {
        let pid = self.count.len() as u32;
        self.index.insert(key, pid);
        self.count.push(count);
        self.words.push(words);
        pid
    }

    #[inline]
    fn subtract(&mut self, key: u64, amount: i64) {
        if let Some(&pid) = self.index.get(&key) {
            self.count[pid as usize] -= amount;
        } else {
            debug_assert!(false, "pair {:?} lost", unpack_key(key));
        }
    }
}

/// Pair counts of a contiguous range of words (initial counting).
#[derive(Default)]
struct LocalPairs {
    index: HashMap<u64, u32>,
    entries: Vec<(u64, i64, Vec<u32>)>,
}

fn count_initial_pairs(words: &Words, first: usize, end: usize) -> LocalPairs {
    let mut local = LocalPairs::default();
    for w in first..end {
        let s = words.start[w];
        let ids = &words.ids[s..s + words.len[w] as usize];
        let c = words.count[w];
        for pair in ids.windows(2) {
            let key = pair_key(pair[0], pair[1]);
            let next = local.entries.len() as u32;
            let slot = *local.index.entry(key).or_insert(next);
            if slot == next {
                local.entries.push((key, 0, Vec::new()));
            }
            let e = &mut local.entries[slot as usize];
            e.1 += c;
            if e.2.last() != Some(&(w as u32)) {
                e.2.push(w as u32);
            }
        }
    }
    local
}

/// Splits `0..words` into `parts` ranges of about equal total length.
fn balanced_ranges(lens: &[u32], parts: usize) -> Vec<(usize, usize)> {
    let total: u64 = lens.iter().map(|&l| l as u64).sum();
    let per = total / parts.max(1) as u64 + 1;
    let mut ranges = Vec::with_capacity(parts);
    let (mut begin, mut acc) = (0usize, 0u64);
    for (w, &l) in lens.iter().enumerate() {
        acc += l as u64;
        if acc >= per {
            ranges.push((begin, w + 1));
            begin = w + 1;
            acc = 0;
        }
    }
    if begin < lens.len() || ranges.is_empty() {
        ranges.push((begin, lens.len()));
    }
    ranges
}

/// Count deltas of one merge `(a, b) -> new`, gathered per neighbour token.
struct MergeScratch {
    /// Weighted occurrences whose left neighbour (already rewritten) is `x`:
    /// `(x, a)` loses and `(x, new)` gains this much.
    left_count: Vec<i64>,
    left_words: Vec<Vec<u32>>,
    left_touched: Vec<u32>,
    /// Weighted occurrences whose right neighbour is `y`: `(b, y)` loses, `(new, y)` gains.
    right_count: Vec<i64>,
    right_words: Vec<Vec<u32>>,
    right_touched: Vec<u32>,
    /// Weighted occurrences of `(a, b)` that were merged.
    merged: i64,
}

impl MergeScratch {
    fn new(vocab_size: usize) -> Self {
        MergeScratch {
            left_count: vec![0; vocab_size],
            left_words: vec![Vec::new(); vocab_size],
            left_touched: Vec::new(),
            right_count: vec![0; vocab_size],
            right_words: vec![Vec::new(); vocab_size],
            right_touched: Vec::new(),
            merged: 0,
        }
    }

    #[inline(always)]
    fn note(count: &mut [i64], words: &mut [Vec<u32>], touched: &mut Vec<u32>, t: u32, c: i64, w: u32) {
        let list = &mut words[t as usize];
        match list.last() {
            None => {
                touched.push(t);
                list.push(w);
            }
            Some(&last) if last != w => list.push(w),
            Some(_) => {}
        }
        count[t as usize] += c;
    }

    /// Merges every non-overlapping `(a, b)` of one word, left to right, in place; returns
    /// the new length.
    #[inline]
    fn merge_word(&mut self, ids: &mut [u32], a: u32, b: u32, new: u32, c: i64, w: u32) -> u32 {
        let n = ids.len();
        let mut r = 0;
        loop {
            if r + 1 >= n {
                return n as u32;
            }
            if ids[r] == a && ids[r + 1] == b {
                break;
            }
            r += 1;
        }
        let mut out = r;
        while r < n {
            if r + 1 < n && ids[r] == a && ids[r + 1] == b {
                if out > 0 {
                    Self::note(&mut self.left_count, &mut self.left_words, &mut self.left_touched, ids[out - 1], c, w);
                }
                if r + 2 < n {
                    Self::note(&mut self.right_count, &mut self.right_words, &mut self.right_touched, ids[r + 2], c, w);
                }
                self.merged += c;
                ids[out] = new;
                out += 1;
                r += 2;
            } else {
                ids[out] = ids[r];
                out += 1;
                r += 1;
            }
        }
        out as u32
    }

    /// Adds `other`'s deltas (from later words) into `self` and clears `other`.
    fn absorb(&mut self, other: &mut MergeScratch) {
        for t in other.left_touched.drain(..) {
            let t = t as usize;
            if self.left_words[t].is_empty() {
                self.left_touched.push(t as u32);
            }
            self.left_count[t] += std::mem::take(&mut other.left_count[t]);
            let mut ws = std::mem::take(&mut other.left_words[t]);
            self.left_words[t].append(&mut ws);
        }
        for t in other.right_touched.drain(..) {
            let t = t as usize;
            if self.right_words[t].is_empty() {
                self.right_touched.push(t as u32);
            }
            self.right_count[t] += std::mem::take(&mut other.right_count[t]);
            let mut ws = std::mem::take(&mut other.right_words[t]);
            self.right_words[t].append(&mut ws);
        }
        self.merged += std::mem::take(&mut other.merged);
    }
}

/// Mutable view of a contiguous range of words, so that ranges can be merged in parallel.
struct WordRange<'a> {
    ids: &'a mut [u32],
    ids_base: usize,
    len: &'a mut [u32],
    word_base: usize,
}

impl WordRange<'_> {
    fn merge_all(
        &mut self,
        words: &[u32],
        start: &[usize],
        count: &[i64],
        scratch: &mut MergeScratch,
        (a, b, new): (u32, u32, u32),
    ) {
        for &w in words {
            let wi = w as usize;
            let s = start[wi] - self.ids_base;
            let l = &mut self.len[wi - self.word_base];
            let ids = &mut self.ids[s..s + *l as usize];
            *l = scratch.merge_word(ids, a, b, new, count[wi], w);
        }
    }
}

/// The merge loop of NANOCHAT.md §1.3 on already counted chunks.
pub fn train_from_counts(counts: &ChunkCounts, vocab_size: u32, mut progress: impl FnMut(&TrainProgress)) -> Merges {
    let total_merges = vocab_size.saturating_sub(256);
    let mut words = Words::from_counts(counts);
    let threads = rayon::current_num_threads().max(1);

    // ---- initial pair counts, per range of words in parallel, then merged in order ----
    let ranges = balanced_ranges(&words.len, threads * 4);
    let locals: Vec<LocalPairs> =
        ranges.par_iter().map(|&(first, end)| count_initial_pairs(&words, first, end)).collect();
    let mut pairs = PairTable::default();
    for local in locals {
        for (key, c, mut ws) in local.entries {
            match pairs.index.get(&key) {
                Some(&pid) => {
                    pairs.count[pid as usize] += c;
                    pairs.words[pid as usize].append(&mut ws);
                }
                None => {
                    pairs.insert(key, c, ws);
                }
            }
        }
    }
    let mut heap: BinaryHeap<Job> = pairs
        .index
        .iter()
        .filter(|&(_, &pid)| pairs.count[pid as usize] > 0)
        .map(|(&key, &pid)| Job { count: pairs.count[pid as usize], key, pid })
        .collect();

    // ---- merge loop ----
    let table_size = vocab_size.max(256) as usize;
    let mut scratch: Vec<MergeScratch> = (0..threads).map(|_| MergeScratch::new(table_size)).collect();
    let mut merges: Vec<(u32, u32)> = Vec::with_capacity(total_merges as usize);
    while (merges.len() as u32) < total_merges {
        let Some(top) = heap.pop() else { break };
        let current = pairs.count[top.pid as usize];
        if current <= 0 {
            continue;
        }
        if current != top.count {
            heap.push(Job { count: current, ..top });
            continue;
        }
        let (a, b) = unpack_key(top.key);
        let new = 256 + merges.len() as u32;
        merges.push((a, b));
        let pos = std::mem::take(&mut pairs.words[top.pid as usize]);
        apply_merge(&mut words, &pos, (a, b, new), &mut scratch);
        drop(pos);

        // ---- fold the deltas into the pair table ----
        let (first, rest) = scratch.split_at_mut(1);
        let s = &mut first[0];
        for other in rest {
            s.absorb(other);
        }
        pairs.count[top.pid as usize] -= s.merged;
        s.merged = 0;
        // `(new, a)` may both gain (right neighbour `a`) and lose (left neighbour `new`).
        let new_a_loss = if s.left_words[new as usize].is_empty() { 0 } else { s.left_count[new as usize] };
        for i in 0..s.left_touched.len() {
            let x = s.left_touched[i];
            let c = std::mem::take(&mut s.left_count[x as usize]);
            let ws = std::mem::take(&mut s.left_words[x as usize]);
            if x != new {
                pairs.subtract(pair_key(x, a), c);
            }
            add_new_pair(&mut pairs, &mut heap, pair_key(x, new), c, ws);
        }
        s.left_touched.clear();
        for i in 0..s.right_touched.len() {
            let y = s.right_touched[i];
            let mut c = std::mem::take(&mut s.right_count[y as usize]);
            let ws = std::mem::take(&mut s.right_words[y as usize]);
            pairs.subtract(pair_key(b, y), c);
            if y == a {
                c -= new_a_loss;
            }
            add_new_pair(&mut pairs, &mut heap, pair_key(new, y), c, ws);
        }
        s.right_touched.clear();
        debug_assert_eq!(pairs.count[top.pid as usize], 0);

        progress(&TrainProgress {
            merges_done: merges.len() as u32,
            total_merges,
            pair: (a, b),
            new_id: new,
            count: top.count as u64,
        });
    }
    Merges::new(merges)
}

#[inline]
fn add_new_pair(pairs: &mut PairTable, heap: &mut BinaryHeap<Job>, key: u64, count: i64, words: Vec<u32>) {
    if count > 0 {
        let pid = pairs.insert(key, count, words);
        heap.push(Job { count, key, pid });
    }
}

/// Rewrites every word of `pos` (sorted, unique), splitting large lists across threads.
fn apply_merge(words: &mut Words, pos: &[u32], abn: (u32, u32, u32), scratch: &mut [MergeScratch]) {
    let Words { ids, start, len, count } = words;
    let parts = scratch.len().min(pos.len() / PARALLEL_MERGE_MIN_WORDS).max(1);
    if parts == 1 {
        let mut all = WordRange { ids, ids_base: 0, len, word_base: 0 };
        all.merge_all(pos, start, count, &mut scratch[0], abn);
        return;
    }
    // Cut `pos` into `parts` slices and the word storage at the first word of each slice.
    let per = pos.len().div_ceil(parts);
    let mut ranges: Vec<(WordRange, &[u32])> = Vec::with_capacity(parts);
    let mut ids_rest: &mut [u32] = ids;
    let mut len_rest: &mut [u32] = len;
    let (mut ids_base, mut word_base) = (0usize, 0usize);
    for (k, slice) in pos.chunks(per).enumerate() {
        let next_word = pos.get((k + 1) * per).map(|&w| w as usize);
        let (ids_here, len_here);
        match next_word {
            Some(nw) => {
                let (i0, i1) = std::mem::take(&mut ids_rest).split_at_mut(start[nw] - ids_base);
                let (l0, l1) = std::mem::take(&mut len_rest).split_at_mut(nw - word_base);
                ids_here = i0;
                len_here = l0;
                ranges.push((WordRange { ids: ids_here, ids_base, len: len_here, word_base }, slice));
                ids_rest = i1;
                len_rest = l1;
                ids_base = start[nw];
                word_base = nw;
            }
            None => {
                ranges.push((
                    WordRange {
                        ids: std::mem::take(&mut ids_rest),
                        ids_base,
                        len: std::mem::take(&mut len_rest),
                        word_base,
                    },
                    slice,
                ));
            }
        }
    }
    let start: &[usize] = start;
    let count: &[i64] = count;
    ranges
        .into_par_iter()
        .zip(scratch.par_iter_mut())
        .for_each(|((mut range, slice), s)| range.merge_all(slice, start, count, s, abn));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn train_words(words: &[(&str, u64)], vocab_size: u32) -> Vec<(u32, u32)> {
        let counts = ChunkCounts::from_pairs(words.iter().map(|&(w, c)| (w.as_bytes(), c)));
        train_from_counts(&counts, vocab_size, |_| {}).pairs
    }

    const A: u32 = b'a' as u32;
    const B: u32 = b'b' as u32;
    const C: u32 = b'c' as u32;

    #[test]
    fn overlapping_pair_aaaa() {
        // "aaaa": (a,a) occurs 3 times; merging left to right gives [X, X], then (X, X).
        let m = train_words(&[("aaaa", 1)], 258);
        assert_eq!(m, vec![(A, A), (256, 256)]);
        // "aaa" -> [X, a]: the pair (X, a) must exist with count 1, (a, a) must be gone.
        let m = train_words(&[("aaa", 1)], 258);
        assert_eq!(m, vec![(A, A), (256, A)]);
        // "aaaaa" -> [X, X, a]: (X, X) and (X, a) tie at 1, (X, a) is the smaller pair.
        let m = train_words(&[("aaaaa", 1)], 260);
        assert_eq!(m, vec![(A, A), (256, A), (256, 257)]);
    }

    #[test]
    fn ties_go_to_the_smaller_pair() {
        // (b,c) and (a,b) both occur twice; (a,b) < (b,c) wins although "bc" comes first.
        let m = train_words(&[("bc", 2), ("ab", 2)], 257);
        assert_eq!(m, vec![(A, B)]);
        // Larger count beats smaller pair.
        let m = train_words(&[("bc", 3), ("ab", 2)], 257);
        assert_eq!(m, vec![(B, C)]);
        // After (a,b) is merged, "abc" yields (256, c) with count 1 vs (b,c) with count 1
        // from "bc": (98, 99) < (256, 99).
        let m = train_words(&[("abc", 1), ("ab", 1), ("bc", 1)], 258);
        assert_eq!(m, vec![(A, B), (B, C)]);
    }

    #[test]
    fn stops_when_no_pairs_are_left() {
        let m = train_words(&[("ab", 5)], 300);
        assert_eq!(m, vec![(A, B)]);
    }

    #[test]
    fn parallel_and_serial_merges_agree() {
        // Enough distinct words that early merges take the parallel path.
        let words: Vec<(String, u64)> = (0..20_000u32)
            .map(|i| (format!(" the{}{}", (b'a' + (i % 26) as u8) as char, i % 977), 1 + (i % 5) as u64))
            .collect();
        let refs: Vec<(&str, u64)> = words.iter().map(|(w, c)| (w.as_str(), *c)).collect();
        let m = train_words(&refs, 600);
        let reference = naive_train(&refs, 600);
        assert_eq!(m, reference);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

        /// Tiny alphabets give many overlapping runs ("aaab") and count ties.
        #[test]
        fn matches_naive_bpe_on_random_words(
            words in proptest::collection::vec(("[abc]{1,12}", 1u64..5), 1..40),
            extra in 1u32..40,
        ) {
            let refs: Vec<(&str, u64)> = words.iter().map(|(w, c)| (w.as_str(), *c)).collect();
            // Equal words are one chunk with the summed count, as after counting.
            let mut merged: std::collections::BTreeMap<&str, u64> = Default::default();
            for (w, c) in &refs {
                *merged.entry(w).or_default() += c;
            }
            let merged: Vec<(&str, u64)> = merged.into_iter().collect();
            proptest::prop_assert_eq!(train_words(&refs, 256 + extra), naive_train(&merged, 256 + extra));
        }
    }

    /// Straightforward BPE: recount every pair before each merge.
    fn naive_train(words: &[(&str, u64)], vocab_size: u32) -> Vec<(u32, u32)> {
        let mut ws: Vec<(Vec<u32>, u64)> =
            words.iter().map(|(w, c)| (w.bytes().map(u32::from).collect(), *c)).collect();
        let mut merges = Vec::new();
        while 256 + (merges.len() as u32) < vocab_size {
            let mut counts: std::collections::HashMap<(u32, u32), u64> = Default::default();
            for (w, c) in &ws {
                for p in w.windows(2) {
                    *counts.entry((p[0], p[1])).or_default() += c;
                }
            }
            let Some((&best, _)) = counts.iter().max_by(|x, y| x.1.cmp(y.1).then_with(|| y.0.cmp(x.0))) else {
                break;
            };
            let new = 256 + merges.len() as u32;
            merges.push(best);
            for (w, _) in ws.iter_mut() {
                let mut out = Vec::with_capacity(w.len());
                let mut i = 0;
                while i < w.len() {
                    if i + 1 < w.len() && (w[i], w[i + 1]) == best {
                        out.push(new);
                        i += 2;
                    } else {
                        out.push(w[i]);
                        i += 1;
                    }
                }
                *w = out;
            }
        }
        merges
    }
}
