"""Produces tests/golden/gpt2_tiny.safetensors by running the reference nanochat (commit 92d63d4) on CPU.

Usage: python tests/golden/make_gpt2_golden.py /path/to/nanochat-92d63d4-checkout [out.safetensors]
The checkout is only imported, never copied. On CPU its COMPUTE_DTYPE is fp32 and flash_attention.py
takes its SDPA fallback (FA3 is only looked for when CUDA is available), so that fallback is what is
recorded. nanochat/engine.py imports the tokenizer module (rustbpe, tiktoken) through
checkpoint_manager; those two imports are stubbed with empty modules: nothing here uses them (the
engine gets the byte-level tokenizer below).
The model is 92d63d4's GPT (value embeddings and their gates, smear, backout, per-layer resid/x0
lambdas, sliding windows "SSSL", RoPE base 100K, QK scale 1.2) at 4 layers, width 64, 2 query heads
and 1 KV head, vocab 300, sequence_len 256 (short window 128, so the forward's 160 positions and the
longer generations are masked by it).
What it records (all on CPU, fp32):
  - per-parameter sha256 of the weights after GPT.init_weights() with torch.manual_seed(42)
  - dense random weights (seeded, drawn in sorted-name order), and with them the logits and losses
    of a forward pass on fixed tokens
  - the reference Engine's generations (KV cache) from those weights with the lm_head rows of ids
    256 and up zeroed (no special token is ever chosen): greedy, 64 tokens, from prompts
    of 12, 100 and 230 tokens (the last two reach past the short and the long window while decoding),
    and one seeded top-k sampling case with 3 samples (the prefill's smear state copied to each row)
"""
import hashlib, json, math, os, sys, types

ref = sys.argv[1]
out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "gpt2_tiny.safetensors")
sys.path.insert(0, ref)
os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
for stub in ("rustbpe", "tiktoken"):
    sys.modules.setdefault(stub, types.ModuleType(stub))
import torch
from safetensors_writer import write_safetensors
from nanochat.common import COMPUTE_DTYPE
from nanochat.gpt import GPT, GPTConfig
from nanochat.engine import Engine
from nanochat import flash_attention

assert COMPUTE_DTYPE == torch.float32 and not flash_attention.USE_FA3
CFG = dict(sequence_len=256, vocab_size=300, n_layer=4, n_head=2, n_kv_head=1, n_embd=64, window_pattern="SSSL")
B, T = 2, 160
SPECIALS = ["<|bos|>", "<|user_start|>", "<|user_end|>", "<|assistant_start|>", "<|assistant_end|>",
            "<|python_start|>", "<|python_end|>", "<|output_start|>", "<|output_end|>"]

class ByteTokenizer:
    """Bytes 0-255, then nanochat's special tokens 256-264 (as the Rust test's encoder)."""
    def encode_special(self, s):
        return 256 + SPECIALS.index(s)
    def get_bos_token_id(self):
        return 256
    def encode(self, s):
        return list(s.encode("utf-8"))
    def decode(self, ids):
        return bytes(ids).decode("utf-8", errors="replace")

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

# 2. forward with dense random weights: matrices N(0, 1/fan_in), scalars U(0.2, 1) (every option active)
g = torch.Generator().manual_seed(1234)
tokens = torch.randint(0, CFG["vocab_size"], (B, T + 1), generator=g)
dense = build(); dense.init_weights()  # also fills the rotary buffers
torch.manual_seed(7)
with torch.no_grad():
    for name, p in sorted(dense.named_parameters()):
        if p.dim() == 2:
            p.normal_(0.0, 1.0 / math.sqrt(p.size(1)))
        else:
            p.uniform_(0.2, 1.0)
x, y = tokens[:, :T].contiguous(), tokens[:, 1:].contiguous()
y_masked = y.clone(); y_masked[0, :5] = -1
dense_weights = {name: p.detach().clone() for name, p in sorted(dense.state_dict().items())}
with torch.no_grad():
    logits = dense(x)
    loss_mean = dense(x, y_masked)
    loss_none = dense(x, y_masked, loss_reduction="none")

# 3. the reference Engine (KV cache) on the dense weights, with the lm_head rows of ids >= 256 (the
# specials and unused ids) zeroed so that no row meets <|assistant_end|> or a tool token: their logit
# 0 is below the greedy maximum and the top 20 of 256 N(0, s) logits
with torch.no_grad():
    dense.lm_head.weight[256:] = 0.0
engine = Engine(dense, ByteTokenizer())
prompt_tokens = torch.randint(0, 256, (230,), generator=g).tolist()
cases = []
for name, length, settings in [
    ("greedy_12", 12, dict(num_samples=1, max_tokens=64, temperature=0.0)),
    ("greedy_100", 100, dict(num_samples=1, max_tokens=64, temperature=0.0)),
    ("greedy_230", 230, dict(num_samples=1, max_tokens=64, temperature=0.0)),
    ("topk_100", 100, dict(num_samples=3, max_tokens=32, temperature=1.0, top_k=20, seed=5)),
]:
    prompt = prompt_tokens[:length]
    columns = [column for column, _ in engine.generate(prompt, **settings)]
    rows = [list(row) for row in zip(*columns)]
    assert all(len(row) == settings["max_tokens"] and max(row) < 256 for row in rows), (name, rows)
    cases.append(dict(name=name, prompt=prompt, settings=settings, rows=rows))

tensors = {"tokens": tokens, "logits": logits, "loss_mean": loss_mean.reshape(1), "loss_none": loss_none}
for name, p in dense_weights.items():
    tensors["dense." + name] = p
meta = {"config": json.dumps(CFG), "init_sha256": json.dumps(init_sha), "reference": "karpathy/nanochat 92d63d4",
        "torch": torch.__version__, "engine": json.dumps(cases)}

write_safetensors(out, tensors, meta)
print("wrote", out, "loss", loss_mean.item(), "greedy", [c["rows"][0][:8] for c in cases])
