//! numpy's `np.random.default_rng(seed)` (SeedSequence → PCG64 XSL-RR) and its
//! `Generator.permutation(n)` / `Generator.shuffle`, bit for bit with numpy 2.x. HuggingFace
//! `datasets`' `.shuffle(seed=42)` is `np.random.default_rng(42).permutation(len(dataset))`, so
//! this fixes the example order of every task loader (NANOCHAT.md Appendix A).
//!
//! numpy's shuffle of a 1-d array draws with `random_interval(i)`: the smallest all-ones mask
//! covering i, rejection until `draw & mask <= i`, and the draw is a 32-bit one whenever
//! i < 2^32. PCG64's 32-bit draws are buffered: one 64-bit output serves two draws, low half
//! first.

/// SeedSequence's entropy pool size in 32-bit words (numpy's `DEFAULT_POOL_SIZE`).
const POOL_SIZE: usize = 4;
/// SeedSequence hash constants (numpy `bit_generator.pyx`).
const INIT_A: u32 = 0x43b0_d7e5;
const MULT_A: u32 = 0x931e_8875;
const INIT_B: u32 = 0x8b51_f9dd;
const MULT_B: u32 = 0x58f3_8ded;
const MIX_MULT_L: u32 = 0xca01_f9dd;
const MIX_MULT_R: u32 = 0x4973_f715;
const XSHIFT: u32 = 16;
/// PCG64's 128-bit LCG multiplier.
const PCG_DEFAULT_MULTIPLIER: u128 = (2_549_297_995_355_413_924u128 << 64) | 4_865_540_595_714_422_341u128;

/// numpy's `SeedSequence(entropy)` without a spawn key: a pool of four 32-bit words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedSequence {
    pool: [u32; POOL_SIZE],
}

fn hashmix(value: u32, hash_const: &mut u32) -> u32 {
    let mut value = value ^ *hash_const;
    *hash_const = hash_const.wrapping_mul(MULT_A);
    value = value.wrapping_mul(*hash_const);
    value ^ (value >> XSHIFT)
}

fn mix(x: u32, y: u32) -> u32 {
    let result = MIX_MULT_L.wrapping_mul(x).wrapping_sub(MIX_MULT_R.wrapping_mul(y));
    result ^ (result >> XSHIFT)
}

impl SeedSequence {
    /// `SeedSequence(seed)` for a non-negative integer seed below 2^64.
    pub fn new(seed: u64) -> Self {
        let low = seed as u32;
        let high = (seed >> 32) as u32;
        if high == 0 {
            Self::from_entropy_words(&[low])
        } else {
            Self::from_entropy_words(&[low, high])
        }
    }

    /// `SeedSequence(entropy)` from the entropy already as numpy's uint32 array (an int seed is
    /// its 32-bit words, least significant first, with no trailing zero words; 0 is `[0]`).
    pub fn from_entropy_words(entropy: &[u32]) -> Self {
        let mut pool = [0u32; POOL_SIZE];
        let mut hash_const = INIT_A;
        for (i, slot) in pool.iter_mut().enumerate() {
            *slot = hashmix(entropy.get(i).copied().unwrap_or(0), &mut hash_const);
        }
        for src in 0..POOL_SIZE {
            for dst in 0..POOL_SIZE {
                if src != dst {
                    pool[dst] = mix(pool[dst], hashmix(pool[src], &mut hash_const));
                }
            }
        }
        for &word in entropy.iter().skip(POOL_SIZE) {
            for slot in pool.iter_mut() {
                *slot = mix(*slot, hashmix(word, &mut hash_const));
            }
        }
        Self { pool }
    }

    /// `generate_state(n_words, np.uint32)`.
    pub fn generate_state_u32(&self, n_words: usize) -> Vec<u32> {
        let mut hash_const = INIT_B;
        self.pool
            .iter()
            .cycle()
            .take(n_words)
            .map(|&word| {
                let mut value = word ^ hash_const;
                hash_const = hash_const.wrapping_mul(MULT_B);
                value = value.wrapping_mul(hash_const);
                value ^ (value >> XSHIFT)
            })
            .collect()
    }

    /// `generate_state(n_words, np.uint64)`: twice as many 32-bit words, paired little-endian.
    pub fn generate_state_u64(&self, n_words: usize) -> Vec<u64> {
        self.generate_state_u32(2 * n_words)
            .chunks_exact(2)
            .map(|pair| u64::from(pair[0]) | (u64::from(pair[1]) << 32))
            .collect()
    }
}

/// numpy's `PCG64` bit generator (XSL-RR output on a 128-bit LCG), including the buffered
/// 32-bit draws numpy's distributions use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pcg64 {
    state: u128,
    inc: u128,
    buffered_u32: Option<u32>,
}

impl Pcg64 {
    /// `PCG64(seed)`: `SeedSequence(seed).generate_state(4, np.uint64)` gives the initial state
    /// (words 0, 1, high first) and the stream (words 2, 3).
    pub fn new(seed: u64) -> Self {
        Self::from_seed_sequence(&SeedSequence::new(seed))
    }

    /// `PCG64(seed_sequence)`.
    pub fn from_seed_sequence(seed: &SeedSequence) -> Self {
        let words = seed.generate_state_u64(4);
        let initstate = (u128::from(words[0]) << 64) | u128::from(words[1]);
        let initseq = (u128::from(words[2]) << 64) | u128::from(words[3]);
        Self::from_state_and_sequence(initstate, initseq)
    }

    /// PCG's `srandom_r(initstate, initseq)` (numpy's `pcg64_set_seed`).
    pub fn from_state_and_sequence(initstate: u128, initseq: u128) -> Self {
        let mut rng = Self { state: 0, inc: (initseq << 1) | 1, buffered_u32: None };
        rng.step();
        rng.state = rng.state.wrapping_add(initstate);
        rng.step();
        rng
    }

    fn step(&mut self) {
        self.state = self.state.wrapping_mul(PCG_DEFAULT_MULTIPLIER).wrapping_add(self.inc);
    }

    /// One 64-bit output: advance, then XSL-RR of the new state.
    pub fn next_u64(&mut self) -> u64 {
        self.step();
        let high = (self.state >> 64) as u64;
        let low = self.state as u64;
        (high ^ low).rotate_right((self.state >> 122) as u32)
    }

    /// One 32-bit output: the high half of the last 64-bit output if one is buffered, else the
    /// low half of a fresh one (whose high half is buffered).
    pub fn next_u32(&mut self) -> u32 {
        if let Some(buffered) = self.buffered_u32.take() {
            return buffered;
        }
        let next = self.next_u64();
        self.buffered_u32 = Some((next >> 32) as u32);
        next as u32
    }

    /// `next_double`: the top 53 bits of a 64-bit output, scaled to [0, 1) (`Generator.random()`).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0)
    }

    /// numpy's `random_interval(max)`: a value in [0, max] by masked rejection, with 32-bit
    /// draws when max fits in 32 bits; max = 0 draws nothing.
    pub fn random_interval(&mut self, max: u64) -> u64 {
        if max == 0 {
            return 0;
        }
        let mask = u64::MAX >> max.leading_zeros();
        if max <= u64::from(u32::MAX) {
            loop {
                let value = u64::from(self.next_u32()) & mask;
                if value <= max {
                    return value;
                }
            }
        }
        loop {
            let value = self.next_u64() & mask;
            if value <= max {
                return value;
            }
        }
    }

    /// `Generator.shuffle(x)` for a 1-d array: for i from len - 1 down to 1, swap x[i] with
    /// x[random_interval(i)].
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            // usize fits in u64 and the result is at most i.
            let j = self.random_interval(i as u64) as usize;
            items.swap(i, j);
        }
    }

    /// `Generator.permutation(n)`: `arange(n)`, shuffled.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut indices: Vec<usize> = (0..n).collect();
        self.shuffle(&mut indices);
        indices
    }
}

/// `np.random.default_rng(seed).permutation(n)`, which is the index order of HF `datasets`'
/// `.shuffle(seed=seed)` on a dataset of n rows.
pub fn numpy_permutation(seed: u64, n: usize) -> Vec<usize> {
    Pcg64::new(seed).permutation(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values printed by numpy 2.4.6, e.g.
    // python3.11 -c "import numpy as np; print(np.random.default_rng(42).permutation(10).tolist())"

    #[test]
    fn seeding_matches_values_printed_by_numpy() {
        assert_eq!(
            SeedSequence::new(42).generate_state_u64(4),
            [
                11_465_652_750_463_011_511,
                15_382_171_918_060_459_190,
                9_018_504_550_953_525_431,
                3_703_499_796_004_394_495
            ]
        );
        let mut bitgen = Pcg64::new(42);
        assert_eq!([bitgen.next_u64(), bitgen.next_u64()], [14_276_969_152_011_380_360, 8_095_878_257_575_067_585]);
        assert_eq!(Pcg64::new(42).next_f64(), 0.7739560485559633);
    }

    #[test]
    fn permutation_matches_values_printed_by_numpy() {
        assert_eq!(numpy_permutation(42, 10), [5, 6, 0, 7, 3, 2, 4, 9, 1, 8]);
        assert_eq!(numpy_permutation(0, 10), [4, 6, 2, 7, 3, 5, 9, 0, 8, 1]);
        assert!(numpy_permutation(42, 0).is_empty());
        assert_eq!(numpy_permutation(42, 1), [0]);
        // The buffered 32-bit half carries over from one call to the next.
        let mut rng = Pcg64::new(42);
        assert_eq!(rng.permutation(5), [4, 2, 3, 1, 0]);
        assert_eq!(rng.permutation(5), [3, 0, 1, 2, 4]);
    }
}
