//! The key/value memory of continuous batching (the server's scheduler, DESIGN.md "the server schedules
//! per token"): one buffer per model replica, allocated once from a byte budget, split into blocks of
//! [`BLOCK_TOKENS`] positions. A sequence reserves a contiguous run of blocks for its prompt and its
//! longest reply when it is admitted, and gives it back when it ends; attention then reads its keys as
//! one view of the buffer (no gather, no copy). The buffer is uninitialised memory: a position is read
//! only after its key and value were written, and on the CPU pages that were never touched cost no RAM.
use tch::{Device, Kind, Tensor};

/// Positions per block: the unit of reservation and of the /stats figures.
pub const BLOCK_TOKENS: usize = 16;

/// The shape of one position's keys and values in a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvShape {
    pub n_layer: usize,
    pub n_kv_head: i64,
    pub head_dim: i64,
    pub kind: Kind,
    pub device: Device,
}

impl KvShape {
    /// Bytes one position takes: keys and values of every layer.
    pub fn bytes_per_token(&self) -> usize {
        2 * self.n_layer * (self.n_kv_head * self.head_dim) as usize * self.kind.elt_size_in_bytes()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error(
        "a KV cache of {budget_mb} MiB holds {tokens} positions of this model ({per_token} bytes each), less \
         than one block of {BLOCK_TOKENS}: raise --kv-cache-mb"
    )]
    BudgetTooSmall { budget_mb: usize, tokens: usize, per_token: usize },
    #[error("cannot allocate the KV cache ({budget_mb} MiB on {device:?}): {message}")]
    Allocation { budget_mb: usize, device: Device, message: String },
}

/// A run of blocks held by one sequence: positions `start()..start() + tokens()` of the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    first_block: usize,
    blocks: usize,
}

impl Extent {
    pub fn start(&self) -> i64 {
        (self.first_block * BLOCK_TOKENS) as i64
    }

    pub fn tokens(&self) -> usize {
        self.blocks * BLOCK_TOKENS
    }
}

pub struct KvArena {
    /// (n_layer, 2, H_kv, positions, hd): keys at [layer, 0], values at [layer, 1].
    buffer: Tensor,
    used: Vec<bool>,
    in_use: usize,
}

impl KvArena {
    /// As many whole blocks as `budget_mb` MiB holds.
    pub fn new(shape: KvShape, budget_mb: usize) -> Result<KvArena, KvError> {
        let per_token = shape.bytes_per_token();
        let tokens = (budget_mb << 20) / per_token.max(1);
        let blocks = tokens / BLOCK_TOKENS;
        if blocks == 0 {
            return Err(KvError::BudgetTooSmall { budget_mb, tokens, per_token });
        }
        let dims = [shape.n_layer as i64, 2, shape.n_kv_head, (blocks * BLOCK_TOKENS) as i64, shape.head_dim];
        let buffer = Tensor::f_empty(dims, (shape.kind, shape.device)).map_err(|e| KvError::Allocation {
            budget_mb,
            device: shape.device,
            message: e.to_string(),
        })?;
        Ok(KvArena { buffer, used: vec![false; blocks], in_use: 0 })
    }

    pub fn device(&self) -> Device {
        self.buffer.device()
    }

    pub fn blocks_total(&self) -> usize {
        self.used.len()
    }

    pub fn blocks_in_use(&self) -> usize {
        self.in_use
    }

    /// Positions the whole buffer holds: the most one request may need.
    pub fn capacity_tokens(&self) -> usize {
        self.used.len() * BLOCK_TOKENS
    }

    /// Blocks for `tokens` positions: the first free run long enough, or None while there is none.
    pub fn reserve(&mut self, tokens: usize) -> Option<Extent> {
        let blocks = tokens.div_ceil(BLOCK_TOKENS).max(1);
        let mut run = 0;
        for i in 0..self.used.len() {
            run = if self.used[i] { 0 } else { run + 1 };
            if run == blocks {
                let first_block = i + 1 - blocks;
                self.used[first_block..=i].fill(true);
                self.in_use += blocks;
                return Some(Extent { first_block, blocks });
            }
        }
        None
    }

    pub fn release(&mut self, extent: Extent) {
        self.used[extent.first_block..extent.first_block + extent.blocks].fill(false);
        self.in_use -= extent.blocks;
    }

    /// Writes the (N, H_kv, hd) keys and values of `layer` at the buffer positions `at` (N,).
    pub fn write(&self, layer: usize, at: &Tensor, k: &Tensor, v: &Tensor) {
        let layer = self.buffer.get(layer as i64);
        let _ = layer.get(0).index_copy_(1, at, &k.transpose(0, 1));
        let _ = layer.get(1).index_copy_(1, at, &v.transpose(0, 1));
    }

    /// All keys and all values of `layer`, each (1, H_kv, positions, hd): views, narrowed per sequence.
    pub fn layer(&self, layer: usize) -> (Tensor, Tensor) {
        let layer = self.buffer.get(layer as i64);
        (layer.get(0).unsqueeze(0), layer.get(1).unsqueeze(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> KvShape {
        KvShape { n_layer: 2, n_kv_head: 1, head_dim: 4, kind: Kind::Float, device: Device::Cpu }
    }

    #[test]
    fn blocks_are_reserved_first_fit_and_given_back() {
        // 2 layers × k,v × 4 floats = 64 bytes a position: 1 MiB is 16,384 positions, 1,024 blocks.
        let mut arena = KvArena::new(shape(), 1).unwrap();
        assert_eq!((arena.blocks_total(), arena.capacity_tokens()), (1024, 16_384));
        let a = arena.reserve(20).unwrap();
        let b = arena.reserve(16).unwrap();
        assert_eq!((a.start(), a.tokens(), b.start()), (0, 32, 32));
        assert_eq!(arena.blocks_in_use(), 3);
        arena.release(a);
        // A run of 3 blocks does not fit in the 2-block hole: it goes after b.
        assert_eq!(arena.reserve(40).unwrap().start(), 48);
        assert_eq!(arena.reserve(1).unwrap().start(), 0, "the hole is reused");
        assert!(arena.reserve(16_384).is_none(), "larger than what is free");
        let err = KvArena::new(KvShape { head_dim: 1 << 20, ..shape() }, 1).err().unwrap();
        assert!(err.to_string().contains("raise --kv-cache-mb"), "{err}");
    }

    #[test]
    fn written_positions_read_back_per_layer() {
        let arena = KvArena::new(shape(), 1).unwrap();
        let k = Tensor::arange(8, (Kind::Float, Device::Cpu)).view([2, 1, 4]);
        let v = -&k;
        arena.write(1, &Tensor::from_slice(&[5i64, 6]), &k, &v);
        let (keys, values) = arena.layer(1);
        let (rk, rv) = (keys.narrow(2, 5, 2), values.narrow(2, 5, 2));
        assert_eq!(rk.size(), [1, 1, 2, 4]);
        assert!(rk.squeeze_dim(0).transpose(0, 1).equal(&k));
        assert!(rv.squeeze_dim(0).transpose(0, 1).equal(&v));
    }
}
