// The tensorwise-scaled fp8 matmul of a Linear layer as a C++ autograd function: nanochat 92d63d4's
// `_Float8Matmul` (nanochat/fp8.py) with its arithmetic, so the same libtorch kernels give the same
// bits. Forward: input and weight quantized to e4m3, y = x·Wᵀ by `_scaled_mm` with fast accumulation.
// Backward: the output gradient quantized to e5m2; dX = dY·W and dW = dYᵀ·X by `_scaled_mm` with
// precise accumulation, from the e4m3 tensors the forward saved. Tensors arrive as tch's `at::Tensor*`;
// results go back as new `at::Tensor*` that the Rust side owns; errors come back as text (shim_guard.h).
#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include "../shim_guard.h"

using torch::autograd::AutogradContext;
using torch::autograd::Function;
using torch::autograd::variable_list;

namespace {

// torch.finfo(dtype).max
double fp8_max(at::ScalarType dtype) { return dtype == at::kFloat8_e4m3fn ? 448.0 : 57344.0; }

// `_to_fp8`: one scale for the whole tensor, fp8_max / amax (in fp64, then fp32; Python's
// `float / tensor` is the tensor's reciprocal times the float), the scaled values saturated to
// ±fp8_max and cast. Returns the fp8 tensor and the inverse scale `_scaled_mm` multiplies by.
std::pair<at::Tensor, at::Tensor> to_fp8(const at::Tensor& x, at::ScalarType dtype) {
  const double max = fp8_max(dtype);
  auto amax = x.to(at::kFloat).abs().max();
  auto scale = (amax.to(at::kDouble).clamp_min(1e-12).reciprocal() * max).to(at::kFloat);
  auto q = (x.to(at::kFloat) * scale).clamp(-max, max).to(dtype);
  return {q, scale.reciprocal()};
}

// [M, N] with column-major strides (the layout `_scaled_mm` wants for its second operand).
at::Tensor col_major(const at::Tensor& x) { return x.t().contiguous().t(); }

struct Float8Matmul : public Function<Float8Matmul> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& weight) {
    auto [in8, in_inv] = to_fp8(input, at::kFloat8_e4m3fn);
    auto [w8, w_inv] = to_fp8(weight, at::kFloat8_e4m3fn);
    ctx->save_for_backward({in8, in_inv, w8, w_inv});
    return at::_scaled_mm(in8, w8.t(), in_inv, w_inv, std::nullopt, std::nullopt, input.scalar_type(), true);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto &in8 = saved[0], &in_inv = saved[1], &w8 = saved[2], &w_inv = saved[3];
    const auto& grad = grads[0];
    auto [g8, g_inv] = to_fp8(grad, at::kFloat8_e5m2);
    auto dtype = grad.scalar_type();
    auto grad_input = at::_scaled_mm(g8, col_major(w8), g_inv, w_inv, std::nullopt, std::nullopt, dtype, false);
    auto grad_weight =
        at::_scaled_mm(g8.t().contiguous(), col_major(in8), g_inv, in_inv, std::nullopt, std::nullopt, dtype, false);
    return {grad_input, grad_weight};
  }
};

}  // namespace

extern "C" int nc_fp8_matmul(at::Tensor* input, at::Tensor* weight, at::Tensor** out, char* err, size_t err_len) {
  return nc_shim::guarded(err, err_len, [&] { *out = new at::Tensor(Float8Matmul::apply(*input, *weight)); });
}
