"""Produces tests/golden/muon_bf16.safetensors: karpathy/nanochat 92d63d4's MuonAdamW with COMPUTE_DTYPE bf16.

Usage: python tests/golden/make_muon_bf16_golden.py /path/to/nanochat-92d63d4-checkout [out.safetensors]
The checkout is only imported, never copied. NANOCHAT_DTYPE=bfloat16 makes the reference orthogonalise
in bf16 as it does on a GPU; TORCHDYNAMO_DISABLE runs its torch.compile'd muon_step_fused eagerly, op by op,
so the numbers are libtorch's CPU kernels, the ones the Rust side calls.
Two Muon groups of fp32 parameters, one wide (3 x 24 x 40) and one tall (2 x 40 x 24), from
torch.manual_seed(7); three steps, each with fresh seeded gradients and the LR, momentum and weight
decay of base_train.py's group settings (lr 0.02, momentum 0.95, ns_steps 5, beta2 0.9, wd 0.2).
Recorded: the initial parameters, every step's gradients, and the parameters after each step.
"""
import os, sys

ref = sys.argv[1]
out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "muon_bf16.safetensors")
sys.path.insert(0, ref)
os.environ["NANOCHAT_DTYPE"] = "bfloat16"
os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
import torch
from safetensors_writer import cpu_model, write_safetensors
from nanochat.common import COMPUTE_DTYPE
from nanochat.optim import MuonAdamW

assert COMPUTE_DTYPE == torch.bfloat16
torch.manual_seed(7)
SHAPES = {"wide": (3, 24, 40), "tall": (2, 40, 24)}
STEPS = 3
params = {name: [torch.randn(shape[1:]) for _ in range(shape[0])] for name, shape in SHAPES.items()}
tensors = {}
for name, ps in params.items():
    tensors[f"{name}.initial"] = torch.stack(ps).clone()
ps = [torch.nn.Parameter(p) for p in sum(params.values(), [])]
groups, i = [], 0
for name, shape in SHAPES.items():
    groups.append(dict(kind="muon", params=ps[i:i + shape[0]], lr=0.02, momentum=0.95, ns_steps=5, beta2=0.9, weight_decay=0.2))
    i += shape[0]
opt = MuonAdamW(groups)
for step in range(1, STEPS + 1):
    i = 0
    for name, shape in SHAPES.items():
        grads = torch.randn(shape)
        tensors[f"{name}.grad.{step}"] = grads.clone()
        for k in range(shape[0]):
            ps[i + k].grad = grads[k].clone()
        i += shape[0]
    opt.step()
    i = 0
    for name, shape in SHAPES.items():
        tensors[f"{name}.after.{step}"] = torch.stack([p.detach() for p in ps[i:i + shape[0]]]).clone()
        i += shape[0]
write_safetensors(out, tensors, {"torch": torch.__version__, "steps": str(STEPS), "cpu": cpu_model()})
print("wrote", out)
