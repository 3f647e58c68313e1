"""Produces tests/golden/gpt_tiny.safetensors by running the reference nanochat (commit 10231df) on CPU.

Usage: python tests/golden/make_gpt_golden.py /path/to/nanochat-checkout [out.safetensors]
The checkout is only imported, never copied. Run with TORCHDYNAMO_DISABLE=1 so Muon's Newton-Schulz
runs eagerly (the compiled kernel fuses bf16 ops differently); the Rust port is eager too.
What it records (all on CPU, fp32):
  - per-parameter sha256 of the weights after GPT.init_weights() with torch.manual_seed(42)
  - logits and losses of a forward pass with dense random weights (seeded, drawn in sorted-name order)
  - the loss of each of STEPS training steps (AdamW + Muon from setup_optimizers) from the seed-42 init
"""
import hashlib, json, math, os, sys

ref = sys.argv[1]
out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "gpt_tiny.safetensors")
sys.path.insert(0, ref)
os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
import torch
from safetensors_writer import write_safetensors
from nanochat.gpt import GPT, GPTConfig

CFG = dict(sequence_len=32, vocab_size=300, n_layer=2, n_head=2, n_kv_head=1, n_embd=128)
B, T, STEPS = 2, 32, 6

def build():
    with torch.device("meta"):
        model = GPT(GPTConfig(**CFG))
    model.to_empty(device="cpu")
    return model

def sha(t):
    return hashlib.sha256(bytes(t.detach().contiguous().view(torch.uint8).flatten().tolist())).hexdigest()

# 1. init
torch.manual_seed(42)
model = build()
model.init_weights()
init_sha = {k: sha(v) for k, v in sorted(model.state_dict().items())}

# 2. forward with dense random weights
g = torch.Generator().manual_seed(1234)
tokens = torch.randint(0, CFG["vocab_size"], (B, T + 1), generator=g)
dense = build(); dense.init_weights()  # also fills the rotary buffers
torch.manual_seed(7)
with torch.no_grad():
    for name, p in sorted(dense.named_parameters()):
        p.normal_(0.0, 1.0 / math.sqrt(p.size(1)))
x, y = tokens[:, :T].contiguous(), tokens[:, 1:].contiguous()
y_masked = y.clone(); y_masked[0, :5] = -1
with torch.no_grad():
    logits = dense(x)
    loss_mean = dense(x, y_masked)
    loss_none = dense(x, y_masked, loss_reduction="none")

# 3. training steps from the seed-42 init (single process: fused AdamW + Muon, §4.1)
batches = torch.randint(0, CFG["vocab_size"], (STEPS, B, T + 1), generator=g)
torch.manual_seed(42)
model = build(); model.init_weights()
opts = model.setup_optimizers(unembedding_lr=0.004, embedding_lr=0.2, matrix_lr=0.02, weight_decay=0.0)
losses = []
for step in range(STEPS):
    frac = min(step / 300, 1); momentum = (1 - frac) * 0.85 + frac * 0.95
    for group in opts[1].param_groups: group["momentum"] = momentum
    loss = model(batches[step, :, :T].contiguous(), batches[step, :, 1:].contiguous())
    losses.append(loss.item())
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    for o in opts: o.step()
    model.zero_grad(set_to_none=True)
final = {k: v.detach().clone() for k, v in sorted(model.state_dict().items())}

# 4. each optimizer on its own, on well-conditioned data (no near-zero gradients for Adam to amplify)
from nanochat.muon import Muon, zeropower_via_newtonschulz5
gen = torch.Generator().manual_seed(99)
adam_p0, adam_grads = torch.randn(64, 32, generator=gen), torch.randn(3, 64, 32, generator=gen)
pa = adam_p0.clone().requires_grad_()
opt = torch.optim.AdamW([pa], lr=0.01, betas=(0.8, 0.95), eps=1e-10, weight_decay=0.1, fused=True)
for g_ in adam_grads:
    pa.grad = g_.clone(); opt.step()
ns_in = torch.randn(48, 80, generator=gen)
ns_out = zeropower_via_newtonschulz5(ns_in, 5).float()
muon_p0, muon_grads = torch.randn(96, 32, generator=gen), torch.randn(3, 96, 32, generator=gen)
pm = muon_p0.clone().requires_grad_()
mopt = Muon([pm], lr=0.02, momentum=0.95)
for g_ in muon_grads:
    pm.grad = g_.clone(); mopt.step()

tensors = {"adam_p0": adam_p0, "adam_grads": adam_grads, "adam_out": pa.detach(), "ns_in": ns_in, "ns_out": ns_out,
           "muon_p0": muon_p0, "muon_grads": muon_grads, "muon_out": pm.detach(),
           "tokens": tokens, "logits": logits, "loss_mean": loss_mean.reshape(1), "loss_none": loss_none,
           "train_batches": batches, "train_losses": torch.tensor(losses, dtype=torch.float32)}
for name, p in sorted(dense.state_dict().items()):
    tensors["dense." + name] = p.detach()
for name, p in final.items():
    tensors["trained." + name] = p
meta = {"config": json.dumps(CFG), "init_sha256": json.dumps(init_sha), "reference": "karpathy/nanochat 10231df",
        "torch": torch.__version__, "steps": str(STEPS)}

write_safetensors(out, tensors, meta)
print("wrote", out, "losses", losses)
