//! fp8 training matmuls as nanochat 92d63d4's `nanochat/fp8.py` (`--fp8`, tensorwise scaling): which
//! Linear layers take them, and y = x·Wᵀ with both operands quantized to e4m3 by one scale each and the
//! backward's output gradient to e5m2 (src/model/fp8.cpp, through libtorch's `_scaled_mm`). The weight
//! stays the fp32 (or bf16) master copy; only the matmuls see fp8.
use std::os::raw::c_char;

use tch::Tensor;
use torch_sys::C_tensor;

extern "C" {
    fn nc_fp8_matmul(
        input: *mut C_tensor,
        weight: *mut C_tensor,
        out: *mut *mut C_tensor,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
}

/// base_train.py's `fp8_module_filter`: a Linear of `in_features` → `out_features` runs in fp8 when both
/// are multiples of 16 (the fp8 GEMMs' requirement) and the smaller is at least 128 (smaller ones are
/// not worth the quantization).
pub fn takes_fp8(in_features: i64, out_features: i64) -> bool {
    in_features % 16 == 0 && out_features % 16 == 0 && in_features.min(out_features) >= 128
}

/// `Float8Linear.forward` without bias: x (…, in) · weightᵀ with `weight` (out, in), in x's dtype.
pub fn linear(x: &Tensor, weight: &Tensor) -> Tensor {
    let shape = x.size();
    let (rows, features) = (shape[..shape.len() - 1].iter().product::<i64>(), shape[shape.len() - 1]);
    let (mut x2, mut w) = (x.reshape([rows, features]), weight.shallow_clone());
    // SAFETY: two live tensors; the shim only reads them and writes a new tensor into `out`.
    let y = super::fused_ops::call("fp8 matmul", |out, err, len| unsafe {
        nc_fp8_matmul(x2.as_mut_ptr(), w.as_mut_ptr(), out, err, len)
    });
    let mut out_shape = shape;
    *out_shape.last_mut().unwrap() = weight.size()[0];
    y.reshape(out_shape)
}
