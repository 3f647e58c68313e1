// Two pointwise pieces of the GPT as C++ autograd functions (NANOCHAT.md §3.3), each computing exactly
// the reference's values with fewer kernels, temporaries and saved activations than autograd's
// op-by-op graph. Tensors arrive as tch's `at::Tensor*`; results go back as new `at::Tensor*` that the
// Rust side owns; errors come back as text (src/shim_guard.h).
#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include "../shim_guard.h"

using torch::autograd::AutogradContext;
using torch::autograd::Function;
using torch::autograd::variable_list;

namespace {

// relu(x)² (the MLP's activation). Autograd of `x.relu().square()` runs pow's backward (r.pow(1), 2·…,
// grad·…) and then relu's threshold_backward: four kernels and three temporaries. Here the backward is
// grad·r·2 (two kernels, one temporary): where r = 0 the product is already 0, and scaling by 2 is exact,
// so it equals grad·(2·r) bit for bit.
struct ReluSquare : public Function<ReluSquare> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x) {
    auto r = at::relu(x);
    ctx->save_for_backward({r});
    return at::square(r);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto r = ctx->get_saved_variables()[0];
    auto gx = grads[0] * r;
    gx.mul_(2);
    return {gx};
  }
};

// Writes the rotation of (a1, a2) by (c, s) into out: out1 = a1·c + a2·s, out2 = a1·(−s) + a2·c, the
// reference's expression with its operation order (product, product, sum), so the same bits.
void rotate_into(const at::Tensor& out, const at::Tensor& a, const at::Tensor& c, const at::Tensor& s,
                 const at::Tensor& neg_s) {
  auto half = a.size(3) / 2;
  auto a1 = a.narrow(3, 0, half), a2 = a.narrow(3, half, half);
  auto out1 = out.narrow(3, 0, half), out2 = out.narrow(3, half, half);
  at::mul_out(out1, a1, c);
  out1.add_(a2 * s);
  at::mul_out(out2, a1, neg_s);
  out2.add_(a2 * c);
}

// Rotary embedding of (B, T, H, hd) by (1, T, 1, hd/2) cos/sin. The forward writes both halves into one
// output (no cat); the backward is the inverse rotation, dx1 = g1·c + g2·(−s), dx2 = g1·s + g2·c, the
// same sums autograd accumulates from the four products (two terms add the same in either order),
// without narrow_backward's zero-filled copies. Only cos and sin are saved, not the input.
struct Rotary : public Function<Rotary> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& cos,
                            const at::Tensor& sin) {
    auto neg_sin = -sin;
    auto out = at::empty(x.sizes(), x.options().dtype(at::result_type(x, cos)));
    rotate_into(out, x, cos, sin, neg_sin);
    ctx->save_for_backward({cos, sin, neg_sin});
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto &cos = saved[0], &sin = saved[1], &neg_sin = saved[2];
    auto g = grads[0];  // the output's dtype, which is x's (cos/sin are bf16, x is bf16 or fp32)
    auto half = g.size(3) / 2;
    auto g1 = g.narrow(3, 0, half), g2 = g.narrow(3, half, half);
    auto dx = at::empty(g.sizes(), g.options().dtype(at::result_type(g, cos)));
    auto dx1 = dx.narrow(3, 0, half), dx2 = dx.narrow(3, half, half);
    at::mul_out(dx1, g1, cos);
    dx1.add_(g2 * neg_sin);
    at::mul_out(dx2, g1, sin);
    dx2.add_(g2 * cos);
    return {dx, at::Tensor(), at::Tensor()};
  }
};

}  // namespace

extern "C" int nc_relu_square(at::Tensor* x, at::Tensor** out, char* err, size_t err_len) {
  return nc_shim::guarded(err, err_len, [&] { *out = new at::Tensor(ReluSquare::apply(*x)); });
}

extern "C" int nc_rotary(at::Tensor* x, at::Tensor* cos, at::Tensor* sin, at::Tensor** out, char* err,
                         size_t err_len) {
  return nc_shim::guarded(err, err_len, [&] { *out = new at::Tensor(Rotary::apply(*x, *cos, *sin)); });
}
