"""Training throughput: our base-model step (`nanochat bench train`) next to the reference's training
step (karpathy/nanochat gpt.py + setup_optimizers: forward, backward, clip, AdamW + Muon) on the same
torch, the same sizes and the same machine, one after the other. Random tokens; speed only.

usage: .venv/bin/python tests/bench/bench_train.py [--bin target/release/nanochat] [--depths 4 8]
       [--reference PATH-TO-NANOCHAT-CHECKOUT]   (or env NANOCHAT_REFERENCE; commit 10231df)
Without a reference checkout only our figures are printed, and the table says so."""
import argparse, json, os, resource, subprocess, sys, time


def ours(binary, depth, args):
    cmd = [binary, "bench", "train", "--depth", str(depth), "--vocab", str(args.vocab), "--seq-len", str(args.seq_len),
           "--batch", str(args.batch), "--steps", str(args.steps)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def reference(path, depth, args):
    # A child process per depth so peak RSS is per run. Muon's Newton-Schulz runs eagerly on CPU.
    code = f"""
import sys, time, json, resource, os
os.environ["TORCHDYNAMO_DISABLE"] = "1"
sys.path.insert(0, {path!r})
import torch
from nanochat.gpt import GPT, GPTConfig
torch.manual_seed(42)
d = {depth} * 64
cfg = GPTConfig(sequence_len={args.seq_len}, vocab_size={args.vocab}, n_layer={depth}, n_head=max(1, (d + 127) // 128), n_kv_head=max(1, (d + 127) // 128), n_embd=d)
with torch.device("meta"):
    model = GPT(cfg)
model.to_empty(device="cpu"); model.init_weights()
opts = model.setup_optimizers()
def step():
    x = torch.randint(0, {args.vocab}, ({args.batch}, {args.seq_len} + 1))
    loss = model(x[:, :-1].contiguous(), x[:, 1:].contiguous())
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    for o in opts: o.step()
    model.zero_grad(set_to_none=True)
for _ in range(2): step()
t0 = time.perf_counter()
for _ in range({args.steps}): step()
dt = (time.perf_counter() - t0) / {args.steps}
print(json.dumps({{"step_ms": dt * 1e3, "tok_per_sec": {args.batch} * {args.seq_len} / dt,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--bin", default=os.path.join(root, "target", "release", "nanochat"))
    ap.add_argument("--depths", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--vocab", type=int, default=65536)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--reference", default=os.environ.get("NANOCHAT_REFERENCE"))
    args = ap.parse_args()
    print(f"CPU training step, batch {args.batch} x {args.seq_len} tokens, vocab {args.vocab}, "
          f"{os.cpu_count()} CPU threads, load average {os.getloadavg()[0]:.2f}\n")
    print("| depth | impl | step (ms) | tokens/s | peak RSS (MiB) |")
    print("|---|---|---|---|---|")
    for depth in args.depths:
        o = ours(args.bin, depth, args)
        print(f"| {depth} | nanochat (Rust) | {o['step_ms']:.0f} | {o['tok_per_sec']:.0f} | {o['peak_rss_mib']:.0f} |")
        if args.reference:
            r = reference(args.reference, depth, args)
            print(f"| {depth} | reference (PyTorch) | {r['step_ms']:.0f} | {r['tok_per_sec']:.0f} | {r['peak_rss_mib']:.0f} |")
            print(f"| {depth} | ours / reference | {o['step_ms'] / r['step_ms']:.2f}x time | {o['tok_per_sec'] / r['tok_per_sec']:.2f}x | |")
        else:
            print(f"| {depth} | reference | (no checkout: pass --reference or set NANOCHAT_REFERENCE) | | |")


if __name__ == "__main__":
    main()
