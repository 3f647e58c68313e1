"""Produces tests/golden/fp8_matmul.safetensors: karpathy/nanochat 92d63d4's `_Float8Matmul` (nanochat/fp8.py) on CPU.

Usage: python tests/golden/make_fp8_golden.py /path/to/nanochat-92d63d4-checkout [out.safetensors]
The checkout is only imported, never copied. libtorch's `_scaled_mm` runs fp8 GEMMs on the CPU too, so
the reference's autograd function runs here as it would on an H100, with the CPU's kernels.
Cases: the input in fp32 (the CPU's compute dtype) and in bf16 (a GPU's), 96 x 128 from
torch.manual_seed(3), against an fp32 master weight 256 x 128 (a Linear 128 -> 256, which passes
base_train.py's fp8 filter), and a seeded output gradient in the input's dtype; plus an input with a
zero row and values far outside e4m3's range (saturation). Recorded for each: the inputs, the output,
the input's and the weight's gradients (the weight's in fp32, as autograd casts it).
"""
import os, sys

ref = sys.argv[1]
out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "fp8_matmul.safetensors")
sys.path.insert(0, ref)
import torch
from safetensors_writer import cpu_model, write_safetensors
from nanochat.fp8 import _Float8Matmul

torch.manual_seed(3)
weight = torch.randn(256, 128) * 0.05
cases = {
    "fp32": torch.randn(96, 128),
    "bf16": torch.randn(96, 128).to(torch.bfloat16),
    "wide_range": torch.cat([torch.zeros(1, 128), torch.randn(95, 128) * 1e4]),
}
tensors = {"weight": weight}
for name, x in cases.items():
    x = x.clone().requires_grad_(True)
    w = weight.clone().requires_grad_(True)
    y = _Float8Matmul.apply(x, w)
    grad = torch.randn(y.shape).to(y.dtype)
    y.backward(grad)
    # The writer stores fp32/fp64/int64: bf16 values are exact in fp32.
    for key, t in {"input": x, "grad_output": grad, "output": y, "grad_input": x.grad, "grad_weight": w.grad}.items():
        tensors[f"{name}.{key}"] = t.detach().float()
    print(name, y.dtype, x.grad.dtype, w.grad.dtype)
write_safetensors(out, tensors, {"torch": torch.__version__, "cpu": cpu_model(), "cases": ",".join(cases)})
print("wrote", out)
