"""Generation speed: our engine (`nanochat bench engine`) next to the reference's Engine
(karpathy/nanochat engine.py, KV cache) on the same torch, the same freshly initialised weights (seed 42,
the same init), the same prompt and greedy decoding, on this machine, one after the other: time to first
token, decode tokens/s at batch 1 and batch N; and ours through the server's continuous-batching scheduler
(the same decode, N sequences in one batch). Speed only. With --repeat R, ours and the reference run
alternately R times and the table gives each figure's median (the ratios are of the medians; every run is
listed after the table), for a CPU shared with other work.

The reference's engine imports its tokenizer module, so run this with a Python that has torch, tiktoken,
tokenizers and rustbpe when --reference is given.

usage: .venv/bin/python tests/bench/bench_engine.py [--bin target/release/nanochat] [--depth 4] [--repeat 1]
       [--reference PATH-TO-NANOCHAT-CHECKOUT]   (or env NANOCHAT_REFERENCE; commit 10231df)"""
import argparse, json, os, statistics, subprocess, sys


def ours(args):
    cmd = [args.bin, "bench", "engine", "--depth", str(args.depth), "--vocab", str(args.vocab), "--prompt-len",
           str(args.prompt_len), "--max-tokens", str(args.max_tokens), "--batch", str(args.batch), "--dtype", args.dtype]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])


def reference(args):
    code = f"""
import sys, time, json, os
sys.path.insert(0, {args.reference!r})
import torch
from nanochat.gpt import GPT, GPTConfig
from nanochat.engine import Engine
SPECIALS = ["<|bos|>", "<|user_start|>", "<|user_end|>", "<|assistant_start|>", "<|assistant_end|>",
            "<|python_start|>", "<|python_end|>", "<|output_start|>", "<|output_end|>"]
class Tok:  # the engine only needs special ids (and decode/encode for tool calls)
    def __init__(self, mergeable):
        self.ids = {{s: mergeable + i for i, s in enumerate(SPECIALS)}}
    def encode_special(self, s): return self.ids[s]
    def get_bos_token_id(self): return self.ids["<|bos|>"]
    def decode(self, ids): return ""
    def encode(self, s): return []
vocab = {args.vocab}
mergeable = vocab - len(SPECIALS)
d = {args.depth} * 64
heads = max(1, (d + 127) // 128)
torch.manual_seed(42)
with torch.device("meta"):
    model = GPT(GPTConfig(sequence_len=2048, vocab_size=vocab, n_layer={args.depth}, n_head=heads, n_kv_head=heads, n_embd=d))
model.to_empty(device="cpu"); model.init_weights(); model.eval()
engine = Engine(model, Tok(mergeable))
prompt = [(i * 2654435761) % 50000 % mergeable for i in range({args.prompt_len})]
def run(rows, max_tokens):
    t0 = time.perf_counter(); n = 0
    for _ in engine.generate(prompt, num_samples=rows, max_tokens=max_tokens, temperature=0.0):
        n += 1
    return time.perf_counter() - t0, n
run(1, 2)
ttft, _ = run(1, 1)
t1, n1 = run(1, {args.max_tokens})
tb, nb = run({args.batch}, {args.max_tokens})
print(json.dumps({{"time_to_first_token_ms": ttft * 1e3, "batch1_tokens_per_sec": n1 / max(t1 - ttft, 1e-9),
                  "batchN_tokens_per_sec": nb * {args.batch} / max(tb - ttft, 1e-9), "columns": [n1, nb]}}))
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def median(runs, key):
    return statistics.median(r[key] for r in runs)


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(root, "target", "release", "nanochat"))
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=65536)
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=1, help="runs of each, alternating; the table gives medians")
    ap.add_argument("--dtype", default="auto", help="ours: auto, bfloat16 or float32 (the reference runs fp32 on CPU)")
    ap.add_argument("--reference", default=os.environ.get("NANOCHAT_REFERENCE"))
    args = ap.parse_args()
    print(f"CPU generation, depth {args.depth}, vocab {args.vocab}, prompt {args.prompt_len} tokens, "
          f"{args.max_tokens} new tokens, greedy, {os.cpu_count()} CPU threads, {args.repeat} run(s) each, "
          f"load average {os.getloadavg()[0]:.2f} at the start\n")
    ours_runs, ref_runs = [], []
    for _ in range(args.repeat):
        ours_runs.append(ours(args))
        if args.reference:
            ref_runs.append(reference(args))
    o = {k: median(ours_runs, k) for k in ("time_to_first_token_ms", "batch1_tokens_per_sec", "batchN_tokens_per_sec",
                                           "scheduler_batch1_tokens_per_sec", "scheduler_batchN_tokens_per_sec")}
    dtype = ours_runs[0]["dtype"]
    print(f"| impl | first token (ms) | decode tok/s, batch 1 | decode tok/s, batch {args.batch} |")
    print("|---|---|---|---|")
    print(f"| nanochat (Rust, {dtype}) | {o['time_to_first_token_ms']:.1f} | {o['batch1_tokens_per_sec']:.1f} | {o['batchN_tokens_per_sec']:.1f} |")
    print(f"| nanochat serve's scheduler ({dtype}) | | {o['scheduler_batch1_tokens_per_sec']:.1f} | {o['scheduler_batchN_tokens_per_sec']:.1f} |")
    if not args.reference:
        print("| reference | (no checkout: pass --reference or set NANOCHAT_REFERENCE) | | |")
    else:
        r = {k: median(ref_runs, k) for k in ("time_to_first_token_ms", "batch1_tokens_per_sec", "batchN_tokens_per_sec")}
        print(f"| reference (PyTorch) | {r['time_to_first_token_ms']:.1f} | {r['batch1_tokens_per_sec']:.1f} | {r['batchN_tokens_per_sec']:.1f} |")
        print(f"| ours / reference | {r['time_to_first_token_ms'] / o['time_to_first_token_ms']:.2f}x faster | "
              f"{o['batch1_tokens_per_sec'] / r['batch1_tokens_per_sec']:.2f}x | {o['batchN_tokens_per_sec'] / r['batchN_tokens_per_sec']:.2f}x |")
        if any(x["columns"] != y["columns"] for x, y in zip(ours_runs, ref_runs)):
            print(f"(different amounts of work: columns ours {ours_runs[0]['columns']} vs reference {ref_runs[0]['columns']})")
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")
    if args.repeat > 1:
        for i, x in enumerate(ours_runs):
            line = (f"run {i + 1}: ours {x['time_to_first_token_ms']:.1f} ms, {x['batch1_tokens_per_sec']:.1f} / "
                    f"{x['batchN_tokens_per_sec']:.1f} tok/s (scheduler {x['scheduler_batch1_tokens_per_sec']:.1f} / "
                    f"{x['scheduler_batchN_tokens_per_sec']:.1f})")
            if ref_runs:
                y = ref_runs[i]
                line += (f"; reference {y['time_to_first_token_ms']:.1f} ms, {y['batch1_tokens_per_sec']:.1f} / "
                         f"{y['batchN_tokens_per_sec']:.1f} tok/s")
            print(line)


if __name__ == "__main__":
    main()
