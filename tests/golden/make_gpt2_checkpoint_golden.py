"""Produces tests/golden/gpt2_sft/base_d2/ (a base checkpoint as karpathy/nanochat 92d63d4 writes it)
and tests/golden/gpt2_sft/forward.safetensors (the reference's forward from that checkpoint).

Usage: python tests/golden/make_gpt2_checkpoint_golden.py /path/to/nanochat-92d63d4-checkout [out-dir]
The checkout is only imported, never copied. TORCHDYNAMO_DISABLE is set; on CPU COMPUTE_DTYPE is fp32.
The model is 92d63d4's GPT (every option: value embeddings and gates, smear, backout, resid/x0
lambdas, windows "SSSL", RoPE base 100K, QK scale 1.2) at 2 layers, width 32, 2 query heads and
1 KV head, sequence_len 256 (short window 128), vocab 2,048 (tests/golden/chat/tokenizer.pkl's).
Its weights: GPT.init_weights() after torch.manual_seed(42), then every parameter redrawn, in sorted-name
order after torch.manual_seed(7), matrices N(0, 1/fan_in) and the rest U(0.2, 1), so that every
option changes the logits (the init's zero projections and lambdas would hide some).
The checkpoint is written by the reference's own checkpoint_manager.save_checkpoint (step 0, no
optimizer), with the state_dict as base_train.py saves it on a GPU: wte and value_embeds in bf16
(92d63d4 casts the embeddings to COMPUTE_DTYPE, bf16 on CUDA), the rest fp32; the meta's
model_config is GPTConfig's fields (dimensions and window_pattern) as base_train.py writes them.
Then the model is loaded back through the reference's checkpoint_manager.build_model (phase eval,
bf16 converted to fp32 on CPU, the tokenizer from a temporary base dir holding tokenizer.pkl) and
recorded: a forward on 160 seeded tokens, the per-position losses and every 16th logit column.
"""
import json, math, os, shutil, sys, tempfile

ref = sys.argv[1]
here = os.path.dirname(os.path.abspath(__file__))
out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "gpt2_sft")
sys.path.insert(0, ref)
os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
import torch
from safetensors_writer import cpu_model, write_safetensors
from nanochat.common import COMPUTE_DTYPE
from nanochat.gpt import GPT, GPTConfig
from nanochat.checkpoint_manager import save_checkpoint, build_model

assert COMPUTE_DTYPE == torch.float32
CFG = dict(sequence_len=256, vocab_size=2048, n_layer=2, n_head=2, n_kv_head=1, n_embd=32, window_pattern="SSSL")
T = 160

torch.manual_seed(42)
with torch.device("meta"):
    model = GPT(GPTConfig(**CFG))
model.to_empty(device="cpu")
model.init_weights()
torch.manual_seed(7)
with torch.no_grad():
    for name, p in sorted(model.named_parameters()):
        if p.dim() == 2:
            p.normal_(0.0, 1.0 / math.sqrt(p.size(1)))
        else:
            p.uniform_(0.2, 1.0)
state = {k: (v.bfloat16() if k == "transformer.wte.weight" or k.startswith("value_embeds.") else v)
         for k, v in model.state_dict().items()}
checkpoint_dir = os.path.join(out, "base_d2")
shutil.rmtree(checkpoint_dir, ignore_errors=True)
meta = {"step": 0, "val_bpb": None, "model_config": CFG, "user_config": {"depth": 2},
        "device_batch_size": 2, "max_seq_len": CFG["sequence_len"]}
save_checkpoint(checkpoint_dir, 0, state, None, meta)

with tempfile.TemporaryDirectory() as base:
    os.makedirs(os.path.join(base, "tokenizer"))
    shutil.copy(os.path.join(here, "chat", "tokenizer.pkl"), os.path.join(base, "tokenizer", "tokenizer.pkl"))
    os.environ["NANOCHAT_BASE_DIR"] = base
    loaded, _, _ = build_model(checkpoint_dir, 0, torch.device("cpu"), phase="eval")

g = torch.Generator().manual_seed(1234)
tokens = torch.randint(0, CFG["vocab_size"], (1, T + 1), generator=g)
x, y = tokens[:, :T].contiguous(), tokens[:, 1:].contiguous()
with torch.no_grad():
    logits = loaded(x)
    loss_none = loaded(x, y, loss_reduction="none")
tensors = {"tokens": tokens, "logits_every_16th": logits[..., ::16].contiguous().float(),
           "loss_none": loss_none.float()}
write_safetensors(os.path.join(out, "forward.safetensors"), tensors,
                  {"reference": "karpathy/nanochat 92d63d4", "torch": torch.__version__, "cpu": cpu_model()})
print("wrote", out, "mean loss", loss_none.mean().item())
