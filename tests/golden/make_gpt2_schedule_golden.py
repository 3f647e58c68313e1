"""Produces tests/golden/gpt2_schedule.json: base training's sizing and schedules at karpathy/nanochat 92d63d4.

Usage: python tests/golden/make_gpt2_schedule_golden.py /path/to/nanochat-92d63d4-checkout [out.json]
The checkout is only read. Nothing of base_train.py is re-typed here: its own source lines are executed,
in slices cut at its comments, with `args` set to its argparse defaults (read from its own parser
lines) and the overrides of each case:
  - `build_model_meta` and the scaling-law block ("# 1) Use scaling laws" up to "# Initialize the
    Optimizer"): target tokens, D_REF, the auto batch size, the LR scale by batch size, the scaled WD;
  - `model.setup_optimizer(...)` of gpt.py on the meta model, called by base_train.py's own lines: each
    group's initial LR, betas, eps and weight decay;
  - the horizon block ("# num_iterations: either" up to "# Learning rate schedule") and the three
    schedule functions, evaluated at the steps around every breakpoint.
The model is GPT(GPTConfig) on the meta device with vocab 32,768 (the tokenizer's 2^15), sequence 2048,
window pattern SSSL, as the speedrun builds it. rustbpe and tiktoken are stubbed with empty modules
(only the tokenizer module imports them; nothing here tokenizes).
"""
import argparse, json, os, re, sys, types

ref = sys.argv[1]
out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "gpt2_schedule.json")
sys.path.insert(0, ref)
os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
for stub in ("rustbpe", "tiktoken"):
    sys.modules.setdefault(stub, types.ModuleType(stub))
import math
import torch
from nanochat.gpt import GPT, GPTConfig

source = open(os.path.join(ref, "scripts", "base_train.py")).read()

def between(start, end):
    """base_train.py's lines from the one containing `start` up to (excluding) the one containing `end`."""
    i = source.index(start)
    i = source.rindex("\n", 0, i) + 1
    return source[i:source.index(end, i)]

def default_args():
    """base_train.py's argparse defaults, from its own add_argument lines."""
    parser = argparse.ArgumentParser()
    lines = [l for l in source.splitlines() if l.startswith("parser.add_argument(")]
    for line in lines:
        exec(line, {"parser": parser, "int": int, "float": float, "str": str})
    return parser.parse_args([])

VOCAB = 32768
STEPS = lambda n, warmdown_start: sorted({s for s in [0, 1, 20, 39, 40, 41, 200, 399, 400, 401,
    warmdown_start - 1, warmdown_start, warmdown_start + 1, (warmdown_start + n) // 2, n - 1, n] if 0 <= s <= n})

cases = []
for depth, ratio in [(12, 8), (24, 8), (32, 8), (12, 12), (24, 12), (32, 12)]:
    args = default_args()
    args.depth, args.target_param_data_ratio = depth, float(ratio)
    env = dict(args=args, GPT=GPT, GPTConfig=GPTConfig, torch=torch, math=math, vocab_size=VOCAB, print0=lambda *a, **k: None)
    exec(between("def build_model_meta(depth):", "# Build the model, move to device"), env)
    env["model"] = env["build_model_meta"](depth)
    exec(between("# Get the parameter counts of our model", "# Initialize the Optimizer (combined"), env)
    exec(between("optimizer = model.setup_optimizer(", "if resuming:"), env)
    exec(between("# num_iterations: either it is given", "# Learning rate schedule"), env)
    exec(between("def get_lr_multiplier(it):", "# Training loop"), env)
    n = env["num_iterations"]
    warmdown_start = n - round(args.warmdown_ratio * n)
    groups = [dict(kind=g["kind"], shapes=[list(p.shape) for p in g["params"]], lr=g["lr"],
                   **({"betas": list(g["betas"]), "eps": g["eps"], "weight_decay": g["weight_decay"]} if g["kind"] == "adamw"
                      else {"momentum": g["momentum"], "ns_steps": g["ns_steps"], "beta2": g["beta2"], "weight_decay": g["weight_decay"]}))
              for g in env["optimizer"].param_groups]
    steps = STEPS(n, warmdown_start)
    cases.append(dict(
        depth=depth, target_param_data_ratio=ratio, n_embd=env["model"].config.n_embd,
        num_scaling_params=env["num_scaling_params"], target_tokens=env["target_tokens"], d_ref=env["D_REF"],
        total_batch_size=env["total_batch_size"], batch_lr_scale=env["batch_lr_scale"],
        weight_decay_scaled=env["weight_decay_scaled"], num_iterations=n, groups=groups,
        steps=steps,
        lr_multiplier=[env["get_lr_multiplier"](s) for s in steps],
        muon_momentum=[env["get_muon_momentum"](s) for s in steps],
        weight_decay=[env["get_weight_decay"](s) for s in steps],
    ))

settings = {k: getattr(default_args(), k) for k in ["warmup_steps", "warmdown_ratio", "final_lr_frac", "weight_decay",
            "embedding_lr", "unembedding_lr", "matrix_lr", "scalar_lr", "aspect_ratio", "head_dim", "max_seq_len", "window_pattern"]}
golden = dict(reference="karpathy/nanochat 92d63d4", torch=torch.__version__, vocab_size=VOCAB, defaults=settings, cases=cases)
with open(out, "w") as f:  # one case a line
    f.write(json.dumps(golden).replace('{"depth"', '\n{"depth"') + "\n")
print("wrote", out, [(c["depth"], c["target_param_data_ratio"], c["total_batch_size"], c["num_iterations"]) for c in cases])
