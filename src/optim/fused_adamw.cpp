// PyTorch's fused AdamW kernel (the reference's `torch.optim.AdamW(..., fused=True)`, NANOCHAT.md §4.3),
// which tch does not bind: one pass over parameter, gradient and both moments instead of a chain of
// tensor ops. Tensors arrive as tch's `at::Tensor*`; errors come back as text (src/shim_guard.h).
#include <ATen/ATen.h>
#include <ATen/ops/_fused_adamw.h>
#include <c10/core/GradMode.h>

#include "../shim_guard.h"

extern "C" int nc_fused_adamw(at::Tensor* p, at::Tensor* g, at::Tensor* m, at::Tensor* v, double step, double lr,
                              double beta1, double beta2, double weight_decay, double eps, char* err, size_t err_len) {
  return nc_shim::guarded(err, err_len, [&] {
    c10::AutoGradMode no_grad(false);
    // The kernel reads the 1-based step from a float tensor on the parameter's device.
    auto steps = at::full({}, step, p->options().dtype(at::kFloat));
    at::_fused_adamw_({*p}, {*g}, {*m}, {*v}, {}, {steps}, lr, beta1, beta2, weight_decay, eps,
                      /*amsgrad=*/false, /*maximize=*/false);
  });
}
