//! The GPT's pointwise pieces as C++ autograd functions (src/model/fused_ops.cpp): relu(x)² and the
//! rotary embedding, each with the reference's values bit for bit and fewer passes over memory than
//! autograd's op-by-op graph of the same expression (fewer kernels and temporaries in the backward,
//! rotary without `cat` and without keeping its input alive for the backward).
use std::os::raw::c_char;

use tch::Tensor;
use torch_sys::C_tensor;

extern "C" {
    fn nc_relu_square(x: *mut C_tensor, out: *mut *mut C_tensor, err: *mut c_char, err_len: usize) -> i32;
    fn nc_rotary(
        x: *mut C_tensor,
        cos: *mut C_tensor,
        sin: *mut C_tensor,
        out: *mut *mut C_tensor,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
}

/// Runs one of the model's C++ functions (here and src/model/fp8.rs), which writes a new tensor into
/// `out` or an error into its buffer.
pub(super) fn call(name: &str, f: impl FnOnce(*mut *mut C_tensor, *mut c_char, usize) -> i32) -> Tensor {
    let mut out: *mut C_tensor = std::ptr::null_mut();
    let done = crate::shim::call(|err, len| f(&mut out, err, len));
    match done {
        // Shapes, dtypes and devices are the model's own: a failure here is a bug, not bad input.
        Err(message) => panic!("{name} failed: {message}"),
        Ok(()) if out.is_null() => panic!("{name} returned no tensor"),
        // SAFETY: the shim returned a heap-allocated at::Tensor that nothing else owns.
        Ok(()) => unsafe { Tensor::from_ptr(out) },
    }
}

/// relu(x)², the MLP's activation (§3.3), equal bit for bit to `x.relu().square()` and its gradient.
pub fn relu_square(x: &Tensor) -> Tensor {
    let mut x = x.shallow_clone();
    // SAFETY: a live tensor; the shim only reads it.
    call("relu² kernel", |out, err, len| unsafe { nc_relu_square(x.as_mut_ptr(), out, err, len) })
}

/// Rotates (B, T, H, hd) by (1, T, 1, hd/2) cos/sin (§3.3): y1 = x1·cos + x2·sin, y2 = −x1·sin + x2·cos,
/// equal bit for bit to that expression and its gradient.
pub fn rotary(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
    let (mut x, mut cos, mut sin) = (x.shallow_clone(), cos.shallow_clone(), sin.shallow_clone());
    // SAFETY: three live tensors; the shim only reads them.
    call("rotary kernel", |out, err, len| unsafe {
        nc_rotary(x.as_mut_ptr(), cos.as_mut_ptr(), sin.as_mut_ptr(), out, err, len)
    })
}

/// The same two expressions op by op, as the reference writes them and autograd records them: what the
/// fused functions are tested against and measured against (`nanochat bench pointwise`).
pub mod unfused {
    use tch::Tensor;

    pub fn relu_square(x: &Tensor) -> Tensor {
        x.relu().square()
    }

    pub fn rotary(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
        let half = x.size()[3] / 2;
        let (x1, x2) = (x.narrow(3, 0, half), x.narrow(3, half, half));
        Tensor::cat(&[&x1 * cos + &x2 * sin, &x1 * (-sin) + &x2 * cos], 3)
    }
}

#[cfg(test)]
mod tests {
    use super::unfused::{relu_square as relu_square_unfused, rotary as rotary_unfused};
    use tch::{Device, Kind, Tensor};

    /// Value and input gradient (for a fixed random upstream gradient) of `f` at `x`.
    fn value_and_grad(f: impl Fn(&Tensor) -> Tensor, x: &Tensor, upstream: &Tensor) -> (Tensor, Tensor) {
        let x = x.detach().set_requires_grad(true);
        let y = f(&x);
        (y * upstream).sum(Kind::Float).backward();
        (f(&x).detach(), x.grad())
    }

    #[test]
    fn relu_square_equals_the_unfused_expression_bit_for_bit() {
        tch::manual_seed(3);
        for kind in [Kind::Float, Kind::BFloat16] {
            let x = Tensor::randn([4, 8, 64], (Kind::Float, Device::Cpu)).to_kind(kind);
            let up = Tensor::randn([4, 8, 64], (Kind::Float, Device::Cpu)).to_kind(kind);
            let (y, g) = value_and_grad(super::relu_square, &x, &up);
            let (y_ref, g_ref) = value_and_grad(relu_square_unfused, &x, &up);
            assert_eq!((y.kind(), g.kind()), (kind, kind));
            assert!(y.equal(&y_ref), "{kind:?} forward");
            assert!(g.equal(&g_ref), "{kind:?} backward");
            // And it is relu² at all: zero where x <= 0, x² where x > 0.
            assert!(y.equal(&x.clamp_min(0.0).square()));
        }
    }

    #[test]
    fn rotary_equals_the_unfused_expression_bit_for_bit() {
        tch::manual_seed(4);
        let (t, hd) = (12, 16);
        let (cos, sin) = crate::model::rotary::precompute(t, hd, Device::Cpu);
        for kind in [Kind::Float, Kind::BFloat16] {
            let x = Tensor::randn([2, t, 3, hd], (Kind::Float, Device::Cpu)).to_kind(kind);
            let up = Tensor::randn([2, t, 3, hd], (Kind::Float, Device::Cpu)).to_kind(kind);
            let (y, g) = value_and_grad(|x| super::rotary(x, &cos, &sin), &x, &up);
            let (y_ref, g_ref) = value_and_grad(|x| rotary_unfused(x, &cos, &sin), &x, &up);
            assert_eq!((y.kind(), g.kind()), (kind, kind));
            assert!(y.equal(&y_ref), "{kind:?} forward");
            assert!(g.equal(&g_ref), "{kind:?} backward");
            // A rotation keeps each (x1, x2) pair's length (within the bf16 rounding of cos and sin).
            let len = |z: &Tensor| {
                let z = z.to_kind(Kind::Float);
                (z.narrow(3, 0, hd / 2).square() + z.narrow(3, hd / 2, hd / 2).square()).sqrt()
            };
            assert!(len(&y).allclose(&len(&x), 2e-2, 2e-2, false), "{kind:?} pair lengths");
        }
    }

    #[test]
    #[should_panic(expected = "rotary kernel failed: The size of tensor a (7) must match the size of tensor b (5)")]
    fn a_shim_error_comes_back_as_the_kernels_message() {
        // cos/sin for 5 positions applied to 7: libtorch's broadcast error, carried through the shim.
        let (cos, sin) = crate::model::rotary::precompute(5, 8, Device::Cpu);
        let _ = super::rotary(&Tensor::zeros([1, 7, 2, 8], (Kind::Float, Device::Cpu)), &cos, &sin);
    }

    #[test]
    fn both_run_without_recording_a_graph() {
        let x = Tensor::randn([1, 5, 2, 8], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let (cos, sin) = crate::model::rotary::precompute(5, 8, Device::Cpu);
        let (a, b) = tch::no_grad(|| (super::relu_square(&x), super::rotary(&x, &cos, &sin)));
        assert!(!a.requires_grad() && !b.requires_grad());
    }
}
