//! Key/value cache for incremental decoding (NANOCHAT.md §7): per layer (B, H_kv, T_cap, hd) buffers
//! that grow in chunks of 1,024 positions; the position advances after the last layer's insert and
//! gives the rotary offset. For smear (92d63d4) it also keeps the last position's normed embedding.
use tch::Tensor;

/// Capacity grows to the needed length plus this, rounded up to a multiple of it (§7).
pub const GROWTH_CHUNK: i64 = 1024;

pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
    pos: i64,
    /// (B, 1, n_embd): the normed token embedding of the last cached position, before smear (92d63d4
    /// `prev_embedding`); kept by models with smear.
    previous_embedding: Option<Tensor>,
}

impl KvCache {
    pub fn new(n_layer: usize) -> Self {
        KvCache { layers: (0..n_layer).map(|_| None).collect(), pos: 0, previous_embedding: None }
    }

    /// This cache's positions copied into each of `rows` rows: the batch-1 prefill shared by every
    /// sample of a generation (§7).
    pub fn repeated(&self, rows: i64) -> KvCache {
        let copy = |t: &Tensor| t.narrow(2, 0, self.pos).repeat([rows, 1, 1, 1]);
        let layers = self.layers.iter().map(|l| l.as_ref().map(|(k, v)| (copy(k), copy(v)))).collect();
        let previous_embedding = self.previous_embedding.as_ref().map(|e| e.repeat([rows, 1, 1]));
        KvCache { layers, pos: self.pos, previous_embedding }
    }

    /// Keeps `last` (B, 1, n_embd) as the embedding of the last cached position and returns the one
    /// it replaces (None before the first call).
    pub fn swap_previous_embedding(&mut self, last: Tensor) -> Option<Tensor> {
        self.previous_embedding.replace(last)
    }

    /// Number of positions already cached (the rotary offset of the next tokens).
    pub fn pos(&self) -> i64 {
        self.pos
    }

    /// Appends k, v of shape (B, H_kv, T_new, hd) for `layer` and returns views of everything cached.
    pub fn insert(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> (Tensor, Tensor) {
        let t_new = k.size()[2];
        let end = self.pos + t_new;
        let slot = &mut self.layers[layer];
        let needs_growth = slot.as_ref().is_none_or(|(kc, _)| kc.size()[2] < end);
        if needs_growth {
            let capacity = (end + 2 * GROWTH_CHUNK - 1) / GROWTH_CHUNK * GROWTH_CHUNK;
            let grow = |old: Option<&Tensor>, like: &Tensor| {
                let mut shape = like.size();
                shape[2] = capacity;
                let buf = Tensor::zeros(shape.as_slice(), (like.kind(), like.device()));
                if let Some(old) = old {
                    buf.narrow(2, 0, self.pos).copy_(&old.narrow(2, 0, self.pos));
                }
                buf
            };
            let old = slot.take();
            let k_buf = grow(old.as_ref().map(|o| &o.0), k);
            let v_buf = grow(old.as_ref().map(|o| &o.1), v);
            *slot = Some((k_buf, v_buf));
        }
        let (kc, vc) = slot.as_ref().expect("allocated above");
        kc.narrow(2, self.pos, t_new).copy_(k);
        vc.narrow(2, self.pos, t_new).copy_(v);
        let views = (kc.narrow(2, 0, end), vc.narrow(2, 0, end));
        if layer + 1 == self.layers.len() {
            self.pos = end;
        }
        views
    }
}
