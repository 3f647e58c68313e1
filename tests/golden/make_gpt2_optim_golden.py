"""Produces tests/golden/gpt2_optim.safetensors: 20 base-training steps of karpathy/nanochat 92d63d4 on CPU.

Usage: python tests/golden/make_gpt2_optim_golden.py /path/to/nanochat-92d63d4-checkout [out.safetensors]
The checkout is only imported, never copied (rustbpe and tiktoken stubbed as in make_gpt2_golden.py).
On CPU the reference's COMPUTE_DTYPE is fp32, and with TORCHDYNAMO_DISABLE its torch.compile'd
optimizer kernels (adamw_step_fused, muon_step_fused) run eagerly, op by op.
The model is 92d63d4's GPT with every option (value embeddings and gates, smear, backout, resid/x0
lambdas, windows SSSL) at 4 layers, width 32, 2 query heads and 1 KV head, vocab 128, sequence_len 256
(short window 128, shorter than the 160 positions trained on). Its weights are GPT.init_weights()
after torch.manual_seed(42); its optimizer is GPT.setup_optimizer with base_train.py's default LRs
and weight decay 0.28 (batch 2^19 tokens: no scaling). Each step is base_train.py's: loss on one
fixed batch (2 x 160 tokens from a seeded generator, see batches()), backward, the LR multiplier, Muon momentum
and weight decay of the step set on the groups by base_train.py's own lines and schedule functions
(executed from its source with warmup 3 steps, warm-down ratio 0.5, final LR 0.05 over 20 steps),
optimizer.step(), zero_grad.
Recorded: the tokens, the initial weights, the weights after steps 1, 5 and 20, each step's loss and
its (LR multiplier, Muon momentum, Muon weight decay).
And the optimizer alone (run_synthetic): the same 20 steps from the same weights with seeded random
gradients instead of the loss's, the weights after steps 1, 5 and 20.
The CPU model goes into the metadata: libtorch's vectorized kernels round differently on other
instruction sets (the optimizer-alone weights after 20 steps differ by up to 1.9e-6 between an AMD EPYC
with AVX512-BF16 and an Intel Xeon with AVX512-FP16), so the Rust test holds them bit for bit only on
the CPU model that made the golden.
The float-noise envelope: the same run with 1 thread instead of the default (summation order of the
matmuls and reductions), and the
same run from initial weights each moved by one ulp (every non-zero weight up, and in a third run
down). The largest difference from the recorded run at each snapshot, and over the losses, goes into
the metadata. It is wide in the weights (about 0.07 after step 1, 1.8 after step 5 at width 32):
Adam's step is scale-free, so an ulp in a gradient that is itself near float noise (x0_lambdas at
step 1, rarely used embedding rows) changes the step by up to the LR. The losses stay within ~1e-4.
"""
import json, os, sys, types

ref = sys.argv[1]
out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "gpt2_optim.safetensors")
sys.path.insert(0, ref)
os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
for stub in ("rustbpe", "tiktoken"):
    sys.modules.setdefault(stub, types.ModuleType(stub))
import math
import torch
from reference_source import ScriptSource, dedent
from safetensors_writer import cpu_model, write_safetensors
from nanochat.common import COMPUTE_DTYPE
from nanochat.gpt import GPT, GPTConfig

assert COMPUTE_DTYPE == torch.float32
CFG = dict(sequence_len=256, vocab_size=128, n_layer=4, n_head=2, n_kv_head=1, n_embd=32, window_pattern="SSSL")
B, T, STEPS, SNAPSHOTS = 2, 160, 20, (1, 5, 20)
SCHEDULE = dict(warmup_steps=3, warmdown_ratio=0.5, final_lr_frac=0.05, weight_decay=0.28)

source = ScriptSource(ref, "base_train.py")

SCHEDULE_FUNCTIONS = source.between("def get_lr_multiplier(it):", "# Training loop")
SET_GROUPS = dedent(source.between("    lrm = get_lr_multiplier(step)", "    if scaler is not None:"))

def initial_model():
    torch.manual_seed(42)
    with torch.device("meta"):
        model = GPT(GPTConfig(**CFG))
    model.to_empty(device="cpu")
    model.init_weights()
    return model

def setup(model):
    """setup_optimizer as base_train.py calls it, and its schedule functions over STEPS steps."""
    optimizer = model.setup_optimizer(unembedding_lr=0.008, embedding_lr=0.3, matrix_lr=0.02, weight_decay=SCHEDULE["weight_decay"], scalar_lr=0.5)
    args = types.SimpleNamespace(**{k: v for k, v in SCHEDULE.items() if k != "weight_decay"})
    env = dict(args=args, num_iterations=STEPS, weight_decay_scaled=SCHEDULE["weight_decay"], math=math, optimizer=optimizer)
    exec(SCHEDULE_FUNCTIONS, env)
    return optimizer, env

def snapshot(model):
    return {name: p.detach().clone() for name, p in sorted(model.named_parameters())}

def run_synthetic():
    """The optimizer alone: each step, every parameter's gradient is torch.randn of its shape after
    torch.manual_seed(1000 + step), drawn in sorted-name order (the Rust test draws the same numbers
    from the same generator)."""
    model = initial_model()
    optimizer, env = setup(model)
    snapshots = {}
    for step in range(STEPS):
        torch.manual_seed(1000 + step)
        for name, p in sorted(model.named_parameters()):
            p.grad = torch.randn(p.shape)
        env["step"] = step
        exec(SET_GROUPS, env)
        optimizer.step()
        model.zero_grad(set_to_none=True)
        if step + 1 in SNAPSHOTS:
            snapshots[step + 1] = snapshot(model)
    return snapshots

def run(tokens, threads, nudge=0.0):
    torch.set_num_threads(threads)
    model = initial_model()
    if nudge:
        # One ulp towards +inf or -inf; exact zeros (the zero-initialised projections) stay zero, as
        # they do under any summation order (a zero that became a denormal would turn exactly-zero
        # gradients into tiny ones, which Adam, scale-free, turns into whole steps).
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.where(p == 0, p, torch.nextafter(p, torch.full_like(p, nudge))))
    initial = snapshot(model)
    optimizer, env = setup(model)
    snapshots, losses, schedule = {}, [], []
    for step in range(STEPS):
        x, y = tokens[step, :, :T].contiguous(), tokens[step, :, 1:].contiguous()
        loss = model(x, y)
        loss.backward()
        env["step"] = step
        exec(SET_GROUPS, env)
        optimizer.step()
        model.zero_grad(set_to_none=True)
        losses.append(loss.item())
        schedule.append([env["lrm"], env["muon_momentum"], env["muon_weight_decay"]])
        if step + 1 in SNAPSHOTS:
            snapshots[step + 1] = snapshot(model)
    groups = [dict(kind=g["kind"], shapes=[list(p.shape) for p in g["params"]], initial_lr=g["initial_lr"]) for g in optimizer.param_groups]
    return initial, snapshots, losses, schedule, groups

def batches():
    """Learnable tokens: each one follows its predecessor by a fixed random permutation, except with
    probability 0.2 where it is uniform (random tokens would leave the gradients at float-noise level
    and the run chaotic)."""
    g = torch.Generator().manual_seed(1234)
    V = CFG["vocab_size"]
    successor = torch.randperm(V, generator=g)
    tokens = torch.empty(STEPS, B, T + 1, dtype=torch.int64)
    tokens[:, :, 0] = torch.randint(0, V, (STEPS, B), generator=g)
    for t in range(1, T + 1):
        uniform = torch.randint(0, V, (STEPS, B), generator=g)
        follow = torch.rand(STEPS, B, generator=g) < 0.8
        tokens[:, :, t] = torch.where(follow, successor[tokens[:, :, t - 1]], uniform)
    return tokens

tokens = batches()
threads = torch.get_num_threads()
initial, snapshots, losses, schedule, groups = run(tokens, threads)

def max_diff(a, b):
    return max((a[k] - b[k]).abs().max().item() for k in a)

envelope = {}
for label, kwargs in [("one_thread", dict(threads=1)), ("initial_weights_up_one_ulp", dict(threads=threads, nudge=math.inf)),
                      ("initial_weights_down_one_ulp", dict(threads=threads, nudge=-math.inf))]:
    _, other, other_losses, _, _ = run(tokens, **kwargs)
    envelope[label] = {str(s): max_diff(snapshots[s], other[s]) for s in SNAPSHOTS}
    envelope[label]["loss"] = max(abs(a - b) for a, b in zip(losses, other_losses))
    print(label, envelope[label])

synthetic = run_synthetic()
torch.set_num_threads(1)
envelope["synthetic_one_thread"] = {str(s): max_diff(synthetic[s], run_synthetic()[s]) for s in SNAPSHOTS}
print("synthetic_one_thread", envelope["synthetic_one_thread"])

tensors = {"tokens": tokens, "losses": torch.tensor(losses, dtype=torch.float64),
           "schedule_values": torch.tensor(schedule, dtype=torch.float64)}
for name, p in initial.items():
    tensors["initial." + name] = p
for s in SNAPSHOTS:
    for name, p in snapshots[s].items():
        tensors[f"step{s}.{name}"] = p
    for name, p in synthetic[s].items():
        tensors[f"synthetic{s}.{name}"] = p
meta = {"config": json.dumps(CFG), "schedule": json.dumps(SCHEDULE), "steps": str(STEPS), "snapshots": json.dumps(SNAPSHOTS),
        "groups": json.dumps(groups), "envelope": json.dumps(envelope),
        "threads": str(threads), "reference": "karpathy/nanochat 92d63d4", "torch": torch.__version__, "cpu": cpu_model()}

write_safetensors(out, tensors, meta)
print("wrote", out, "losses", [round(l, 4) for l in losses])
