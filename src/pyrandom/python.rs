//! CPython 3.11's `random.Random` (MT19937 seeded from an integer), bit for bit: `getrandbits`,
//! `_randbelow`, `randrange`, `randint`, `random`, `choice`, `shuffle` and `sample`, plus
//! CPython's `hash()` of a tuple of ints. The chat stages use these to pick the same examples in
//! the same order as the reference: CORE shuffle (seed 1337), few-shot draws (1234 + idx),
//! TaskMixture (42), the spelling tasks, and the RL sampling seeds
//! `hash((step, example_idx, sampling_step)) & 0x7FFFFFFF` (NANOCHAT.md Appendix A).

use std::collections::HashSet;

/// MT19937 state size in 32-bit words.
const N: usize = 624;
/// MT19937 middle word offset.
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

/// CPython's `random.sample` threshold between the pool and the set method: the size of a small
/// set minus that of an empty list (NANOCHAT.md Appendix A).
const SAMPLE_BASE_SETSIZE: usize = 21;

/// Caller errors; the messages follow CPython's exceptions where it has one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PyRandomError {
    #[error("getrandbits({0}) needs at most 64 bits here; use getrandbits_words for wider draws")]
    TooManyBits(u32),
    #[error("randbelow(0): the range is empty")]
    EmptyBelow,
    #[error("empty range for randrange({start}, {stop})")]
    EmptyRange { start: i64, stop: i64 },
    #[error("cannot choose from an empty sequence")]
    EmptySequence,
    #[error("sample larger than population: k = {k}, population = {population}")]
    SampleLargerThanPopulation { k: usize, population: usize },
}

/// CPython's `random.Random`: the Mersenne Twister with CPython's seeding and derived methods.
#[derive(Clone)]
pub struct PyRandom {
    mt: [u32; N],
    index: usize,
}

impl std::fmt::Debug for PyRandom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PyRandom").field("index", &self.index).finish_non_exhaustive()
    }
}

impl PyRandom {
    /// `random.Random(seed)` for a Python int seed: CPython seeds with |seed|.
    pub fn new(seed: i64) -> Self {
        Self::from_u64(seed.unsigned_abs())
    }

    /// `random.Random(seed)` for a non-negative seed up to 2^64 - 1.
    pub fn from_u64(seed: u64) -> Self {
        let low = seed as u32;
        let high = (seed >> 32) as u32;
        if high == 0 {
            Self::from_seed_words(&[low])
        } else {
            Self::from_seed_words(&[low, high])
        }
    }

    /// `random.Random(seed)` for |seed| given as its 32-bit words, least significant first
    /// (CPython's `init_by_array` key). Trailing zero words are dropped as CPython's bit length
    /// does; an empty or all-zero key is the seed 0, i.e. the key `[0]`.
    pub fn from_seed_words(words: &[u32]) -> Self {
        let used = words.iter().rposition(|&w| w != 0).map_or(1, |last| last + 1);
        let key: Vec<u32> = if words.is_empty() { vec![0] } else { words[..used].to_vec() };
        let mut rng = Self { mt: [0; N], index: N };
        rng.init_by_array(&key);
        rng
    }

    fn init_genrand(&mut self, seed: u32) {
        self.mt[0] = seed;
        for i in 1..N {
            let prev = self.mt[i - 1];
            self.mt[i] = 1_812_433_253u32.wrapping_mul(prev ^ (prev >> 30)).wrapping_add(i as u32);
        }
        self.index = N;
    }

    fn init_by_array(&mut self, key: &[u32]) {
        self.init_genrand(19_650_218);
        let mt = &mut self.mt;
        let (mut i, mut j) = (1usize, 0usize);
        for _ in 0..N.max(key.len()) {
            let prev = mt[i - 1];
            mt[i] = (mt[i] ^ (prev ^ (prev >> 30)).wrapping_mul(1_664_525)).wrapping_add(key[j]).wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= N {
                mt[0] = mt[N - 1];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..N - 1 {
            let prev = mt[i - 1];
            mt[i] = (mt[i] ^ (prev ^ (prev >> 30)).wrapping_mul(1_566_083_941)).wrapping_sub(i as u32);
            i += 1;
            if i >= N {
                mt[0] = mt[N - 1];
                i = 1;
            }
        }
        mt[0] = 0x8000_0000;
    }

    fn twist(&mut self) {
        let mt = &mut self.mt;
        for kk in 0..N {
            let y = (mt[kk] & UPPER_MASK) | (mt[(kk + 1) % N] & LOWER_MASK);
            let mag = if y & 1 == 1 { MATRIX_A } else { 0 };
            mt[kk] = mt[(kk + M) % N] ^ (y >> 1) ^ mag;
        }
        self.index = 0;
    }

    /// One raw 32-bit MT19937 output (CPython's `genrand_uint32`).
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= N {
            self.twist();
        }
        let mut y = self.mt[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// `getrandbits(k)` for k <= 64: k <= 32 takes the top k bits of one output; wider draws
    /// take one output per 32 bits, least significant word first, the last one shifted down.
    pub fn getrandbits(&mut self, k: u32) -> Result<u64, PyRandomError> {
        if k > 64 {
            return Err(PyRandomError::TooManyBits(k));
        }
        let words = self.getrandbits_words(k as usize);
        Ok(words.iter().rev().fold(0u64, |acc, &w| (acc << 32) | u64::from(w)))
    }

    /// `getrandbits(k)` for any k, as its 32-bit words, least significant first
    /// (`ceil(k / 32)` words; none for k = 0, which draws nothing).
    pub fn getrandbits_words(&mut self, k: usize) -> Vec<u32> {
        let count = k.div_ceil(32);
        let mut remaining = k;
        let mut words = Vec::with_capacity(count);
        for _ in 0..count {
            let mut r = self.next_u32();
            if remaining < 32 {
                r >>= 32 - remaining;
            }
            words.push(r);
            remaining = remaining.saturating_sub(32);
        }
        words
    }

    /// `_randbelow(n)` (`_randbelow_with_getrandbits`): draw `getrandbits(n.bit_length())` until
    /// it is below n. n = 1 still draws (one bit at a time until a 0).
    pub fn randbelow(&mut self, n: u64) -> Result<u64, PyRandomError> {
        if n == 0 {
            return Err(PyRandomError::EmptyBelow);
        }
        let k = u64::BITS - n.leading_zeros();
        loop {
            let r = self.getrandbits(k)?;
            if r < n {
                return Ok(r);
            }
        }
    }

    fn randbelow_usize(&mut self, n: usize) -> Result<usize, PyRandomError> {
        // usize is at most 64 bits on every supported target, so both casts are lossless.
        Ok(self.randbelow(n as u64)? as usize)
    }

    /// `randrange(stop)`: a value in [0, stop).
    pub fn randrange(&mut self, stop: i64) -> Result<i64, PyRandomError> {
        self.randrange_from(0, stop)
    }

    /// `randrange(start, stop)`: `start + _randbelow(stop - start)`.
    pub fn randrange_from(&mut self, start: i64, stop: i64) -> Result<i64, PyRandomError> {
        if stop <= start {
            return Err(PyRandomError::EmptyRange { start, stop });
        }
        // The width of a non-empty i64 range fits in u64 (at most 2^64 - 1).
        let width = (i128::from(stop) - i128::from(start)) as u64;
        let offset = self.randbelow(width)?;
        Ok((i128::from(start) + i128::from(offset)) as i64)
    }

    /// `randint(a, b)` = `randrange(a, b + 1)`: a value in [a, b].
    pub fn randint(&mut self, a: i64, b: i64) -> Result<i64, PyRandomError> {
        if b < a {
            return Err(PyRandomError::EmptyRange { start: a, stop: b.saturating_add(1) });
        }
        // b - a + 1 can be 2^64 (a = i64::MIN, b = i64::MAX): CPython then draws 65 bits.
        let width = i128::from(b) - i128::from(a) + 1;
        if width > i128::from(u64::MAX) {
            let k = 65;
            loop {
                let words = self.getrandbits_words(k);
                let r = u128::from(words[0]) | (u128::from(words[1]) << 32) | (u128::from(words[2]) << 64);
                if (r as i128) < width {
                    return Ok((i128::from(a) + r as i128) as i64);
                }
            }
        }
        let offset = self.randbelow(width as u64)?;
        Ok((i128::from(a) + i128::from(offset)) as i64)
    }

    /// `random()`: a 53-bit float in [0, 1) from two outputs, `(a >> 5, b >> 6)`.
    pub fn random(&mut self) -> f64 {
        let a = self.next_u32() >> 5;
        let b = self.next_u32() >> 6;
        (f64::from(a) * 67_108_864.0 + f64::from(b)) * (1.0 / 9_007_199_254_740_992.0)
    }

    /// The index `choice` would pick from a sequence of `len` items: `_randbelow(len)`.
    pub fn choice_index(&mut self, len: usize) -> Result<usize, PyRandomError> {
        if len == 0 {
            return Err(PyRandomError::EmptySequence);
        }
        self.randbelow_usize(len)
    }

    /// `choice(seq)`: one item of a non-empty slice.
    pub fn choice<'a, T>(&mut self, items: &'a [T]) -> Result<&'a T, PyRandomError> {
        let index = self.choice_index(items.len())?;
        Ok(&items[index])
    }

    /// `shuffle(x)` in place: for i from len - 1 down to 1, swap x[i] with x[_randbelow(i + 1)].
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            // i + 1 >= 2, so randbelow cannot fail.
            let j = self.randbelow_usize(i + 1).unwrap_or(i);
            items.swap(i, j);
        }
    }

    /// `sample(range(population), k)`: the k chosen indices, in CPython's order. Small
    /// populations (n <= `sample_setsize(k)`) use the pool method, larger ones rejection
    /// sampling against the set of indices already taken.
    pub fn sample(&mut self, population: usize, k: usize) -> Result<Vec<usize>, PyRandomError> {
        if k > population {
            return Err(PyRandomError::SampleLargerThanPopulation { k, population });
        }
        let n = population;
        let mut result = Vec::with_capacity(k);
        if n <= sample_setsize(k) {
            let mut pool: Vec<usize> = (0..n).collect();
            for i in 0..k {
                let j = self.randbelow_usize(n - i)?;
                result.push(pool[j]);
                pool[j] = pool[n - i - 1];
            }
        } else {
            let mut selected = HashSet::with_capacity(k);
            for _ in 0..k {
                let mut j = self.randbelow_usize(n)?;
                while selected.contains(&j) {
                    j = self.randbelow_usize(n)?;
                }
                selected.insert(j);
                result.push(j);
            }
        }
        Ok(result)
    }

    /// `sample(population, k)` on a slice: references to the chosen items, in CPython's order.
    pub fn sample_from<'a, T>(&mut self, population: &'a [T], k: usize) -> Result<Vec<&'a T>, PyRandomError> {
        Ok(self.sample(population.len(), k)?.into_iter().map(|i| &population[i]).collect())
    }
}

/// CPython 3.11 `random.sample`'s `setsize`: 21, plus `4 ** ceil(log(3k, 4))` when k > 5, with
/// the logarithm computed as CPython's `math.log(x, 4)` does, `log(x) / log(4)` in doubles.
/// Saturates at `usize::MAX` where Python's int would be larger.
pub fn sample_setsize(k: usize) -> usize {
    if k <= 5 {
        return SAMPLE_BASE_SETSIZE;
    }
    // Python multiplies exactly, then rounds the int to a double once.
    let x = (k as u128 * 3) as f64;
    let exponent = (x.ln() / 4f64.ln()).ceil();
    if exponent >= f64::from(usize::BITS / 2) {
        return usize::MAX;
    }
    // 0 < exponent < BITS / 2 here, so the power fits.
    SAMPLE_BASE_SETSIZE.saturating_add(4usize.pow(exponent as u32))
}

/// CPython's modulus for hashing numbers, 2^61 - 1.
const PY_HASH_MODULUS: u64 = (1 << 61) - 1;
const XXPRIME_1: u64 = 11_400_714_785_074_694_791;
const XXPRIME_2: u64 = 14_029_467_366_897_019_727;
const XXPRIME_5: u64 = 2_870_177_450_012_600_261;

/// CPython's `hash(int)` on 64-bit builds: sign(v) * (|v| mod (2^61 - 1)), with -1 mapped to -2.
pub fn cpython_int_hash(value: i64) -> i64 {
    let reduced = (value.unsigned_abs() % PY_HASH_MODULUS) as i64;
    let hash = if value < 0 { -reduced } else { reduced };
    if hash == -1 {
        -2
    } else {
        hash
    }
}

/// CPython 3.11's `hash(tuple)` (the xxHash-based `tuplehash`) of a tuple of ints, as in
/// `hash((step, example_idx, sampling_step))`. Deterministic: int hashing is not salted.
pub fn cpython_tuple_hash_small_ints(items: &[i64]) -> i64 {
    let mut acc = XXPRIME_5;
    for &item in items {
        let lane = cpython_int_hash(item) as u64;
        acc = acc.wrapping_add(lane.wrapping_mul(XXPRIME_2));
        acc = acc.rotate_left(31);
        acc = acc.wrapping_mul(XXPRIME_1);
    }
    acc = acc.wrapping_add((items.len() as u64) ^ (XXPRIME_5 ^ 3_527_539));
    if acc == u64::MAX {
        return 1_546_275_796;
    }
    acc as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values printed by CPython 3.11.7, e.g.
    // python3.11 -c "import random; r = random.Random(42); print(r.random(), r.random())"

    #[test]
    fn random_matches_values_printed_by_cpython() {
        let mut rng = PyRandom::new(42);
        assert_eq!(rng.random(), 0.6394267984578837);
        assert_eq!(rng.random(), 0.025010755222666936);
        assert_eq!(PyRandom::new(0).random(), 0.8444218515250481);
        // Negative seeds use |seed|.
        assert_eq!(PyRandom::new(-42).random(), 0.6394267984578837);
        let mut rng = PyRandom::new(42);
        rng.random();
        assert_eq!(rng.getrandbits(64), Ok(13_679_192_365_072_849_617));
    }

    #[test]
    fn shuffle_and_sample_match_values_printed_by_cpython() {
        let mut items: Vec<usize> = (0..10).collect();
        PyRandom::new(1337).shuffle(&mut items);
        assert_eq!(items, [0, 3, 7, 2, 1, 6, 4, 5, 8, 9]);
        assert_eq!(PyRandom::new(3).sample(100, 10), Ok(vec![30, 75, 69, 16, 47, 77, 60, 80, 74, 8]));
        assert_eq!(PyRandom::new(1337).sample(100, 3), Ok(vec![79, 68, 90]));
        assert_eq!(
            PyRandom::new(0).sample(3, 4),
            Err(PyRandomError::SampleLargerThanPopulation { k: 4, population: 3 })
        );
    }

    #[test]
    fn sample_setsize_follows_the_reference_examples() {
        // NANOCHAT.md Appendix A: k = 10 -> 85, k = 3 -> 21.
        assert_eq!(sample_setsize(3), 21);
        assert_eq!(sample_setsize(5), 21);
        assert_eq!(sample_setsize(6), 21 + 64);
        assert_eq!(sample_setsize(10), 85);
        assert_eq!(sample_setsize(usize::MAX), usize::MAX);
    }

    #[test]
    fn tuple_hash_matches_values_printed_by_cpython() {
        assert_eq!(cpython_tuple_hash_small_ints(&[]), 5_740_354_900_026_072_187);
        assert_eq!(cpython_tuple_hash_small_ints(&[0, 1, 2]), 2_187_946_392_326_065_592);
        assert_eq!(cpython_tuple_hash_small_ints(&[-1]), 8_078_679_518_589_016_365);
        assert_eq!(cpython_tuple_hash_small_ints(&[1, 2, 3]), 529_344_067_295_497_451);
        assert_eq!(cpython_int_hash(-1), -2);
        assert_eq!(cpython_int_hash((1 << 61) - 1), 0);
    }

    #[test]
    fn caller_errors_are_typed() {
        let mut rng = PyRandom::new(0);
        assert_eq!(rng.getrandbits(65), Err(PyRandomError::TooManyBits(65)));
        assert_eq!(rng.randbelow(0), Err(PyRandomError::EmptyBelow));
        assert_eq!(rng.randrange(-3), Err(PyRandomError::EmptyRange { start: 0, stop: -3 }));
        assert_eq!(rng.choice::<u8>(&[]), Err(PyRandomError::EmptySequence));
        assert!(rng.randint(i64::MAX, i64::MIN).is_err());
    }
}
