"""Training throughput: our base-model step (`nanochat bench train`) next to the reference's training
step (karpathy/nanochat gpt.py + setup_optimizers: forward, backward, clip, AdamW + Muon) on the same
torch, the same sizes and the same machine, one after the other. Random tokens; speed only.

usage: .venv/bin/python tests/bench/bench_train.py [--bin target/release/nanochat] [--depths 4 8]
       [--reference PATH-TO-NANOCHAT-CHECKOUT]   (or env NANOCHAT_REFERENCE; commit 10231df)
       [--device cuda]   (GPU: ours in bf16 vs the reference under bf16 autocast)
       [--impls ours ours-full-logits reference reference-compiled]   (what to time; default the first three)
Without a reference checkout only our figures are printed, and the table says so; our runs' own JSON lines
(device, dtype, ...) follow the table.
Memory: peak RSS on CPU; on a GPU the peak of the device's used memory (nvidia-smi, polled), the same
measurement for every implementation."""
import argparse, json, os, resource, subprocess, sys, threading, time

H100_BF16_PEAK = 989e12  # dense bf16 FLOP/s of an H100/H200 SXM (the reference's MFU denominator)
IMPLS = {"ours": "nanochat (Rust)", "ours-full-logits": "nanochat, full-logits loss",
         "reference": "reference eager (PyTorch)", "reference-compiled": "reference torch.compile"}


class GpuMemoryPeak:
    """Polls nvidia-smi for GPU 0's used memory while a run lasts; .peak_mib is the maximum seen."""

    def __init__(self):
        self.peak_mib, self._stop = 0.0, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self):
        while not self._stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                                     capture_output=True, text=True, timeout=10).stdout
                self.peak_mib = max(self.peak_mib, float(out.strip().splitlines()[0]))
            except Exception:
                pass
            self._stop.wait(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def run_measured(cmd, device):
    # stderr passes through: the runs' own log lines (`device: cuda:0 (...)`) and any error stay visible.
    if device != "cuda":
        return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout, None
    with GpuMemoryPeak() as mem:
        out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    return out, mem.peak_mib


def ours(binary, depth, args, full_logits_loss=False):
    cmd = [binary, "bench", "train", "--depth", str(depth), "--vocab", str(args.vocab), "--seq-len", str(args.seq_len),
           "--batch", str(args.batch), "--steps", str(args.steps), "--warmup", str(args.warmup), "--device", args.device]
    if full_logits_loss:
        cmd.append("--full-logits-loss")
    elif args.profile:
        cmd.append("--profile")
    out, gpu_mib = run_measured(cmd, args.device)
    result = json.loads(out.strip().splitlines()[-1])
    result["gpu_peak_mib"] = gpu_mib
    return result


def reference(path, depth, args, compiled=False):
    # A child process per run so peak memory is per run. On CPU Muon's Newton-Schulz runs eagerly; on a
    # GPU the reference's own setup: bf16 wte (init_weights on CUDA), the forward under bf16 autocast,
    # TF32 matmuls, and with `compiled` torch.compile(model, dynamic=False) as base_train.py.
    device = args.device
    code = f"""
import sys, time, json, resource, os, contextlib
if not {compiled!r}:
    os.environ["TORCHDYNAMO_DISABLE"] = "1"
sys.path.insert(0, {path!r})
import torch
device = {device!r}
if device == "cuda":
    torch.set_float32_matmul_precision("high")
from nanochat.gpt import GPT, GPTConfig
torch.manual_seed(42)
d = {depth} * 64
cfg = GPTConfig(sequence_len={args.seq_len}, vocab_size={args.vocab}, n_layer={depth}, n_head=max(1, (d + 127) // 128), n_kv_head=max(1, (d + 127) // 128), n_embd=d)
with torch.device("meta"):
    model = GPT(cfg)
model.to_empty(device=device); model.init_weights()
opts = model.setup_optimizers()
orig = model
if {compiled!r}:
    model = torch.compile(model, dynamic=False)
autocast = torch.amp.autocast(device_type="cuda", dtype=torch.bfloat16) if device == "cuda" else contextlib.nullcontext()
def sync():
    if device == "cuda": torch.cuda.synchronize()
def step():
    x = torch.randint(0, {args.vocab}, ({args.batch}, {args.seq_len} + 1), device=device)
    with autocast:
        loss = model(x[:, :-1].contiguous(), x[:, 1:].contiguous())
    loss.backward()
    torch.nn.utils.clip_grad_norm_(orig.parameters(), 1.0)
    for o in opts: o.step()
    orig.zero_grad(set_to_none=True)
    sync()
for _ in range({args.warmup}): step()
t0 = time.perf_counter()
for _ in range({args.steps}): step()
dt = (time.perf_counter() - t0) / {args.steps}
print(json.dumps({{"step_ms": dt * 1e3, "tok_per_sec": {args.batch} * {args.seq_len} / dt,
                  "flops_per_token": orig.estimate_flops(),
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""
    out, gpu_mib = run_measured([sys.executable, "-c", code], device)
    result = json.loads(out.strip().splitlines()[-1])
    result["gpu_peak_mib"] = gpu_mib
    return result


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
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--impls", nargs="+", choices=list(IMPLS), default=list(IMPLS)[:3],
                    help="what to time: ours (chunked loss), ours with the full-logits loss, the reference eager and "
                         "under torch.compile (the reference ones need a checkout)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--profile", action="store_true",
                    help="ours (chunked loss) also counts one step's kernels and host syncs by phase (a table on stderr)")
    ap.add_argument("--peak-flops", type=float, default=H100_BF16_PEAK, help="the GPU's bf16 peak, for MFU")
    args = ap.parse_args()
    on_gpu = args.device == "cuda"
    where = "GPU 0, bf16" if on_gpu else f"CPU, {os.cpu_count()} threads, load average {os.getloadavg()[0]:.2f}"
    print(f"Training step, batch {args.batch} x {args.seq_len} tokens, vocab {args.vocab}, {where}\n")
    memory = "peak GPU memory (MiB)" if on_gpu else "peak RSS (MiB)"
    print(f"| depth | impl | step (ms) | tokens/s | MFU | {memory} |")
    print("|---|---|---|---|---|---|")

    def row(depth, name, r, flops):
        mfu = f"{100 * flops * r['tok_per_sec'] / args.peak_flops:.1f}%" if on_gpu and flops else "-"
        mem = r["gpu_peak_mib"] if on_gpu else r["peak_rss_mib"]
        print(f"| {depth} | {name} | {r['step_ms']:.0f} | {r['tok_per_sec']:.0f} | {mfu} | {mem:.0f} |")

    for depth in args.depths:
        runs = []
        for impl in args.impls:
            if impl.startswith("ours"):
                runs.append((impl, ours(args.bin, depth, args, full_logits_loss=impl == "ours-full-logits")))
            elif args.reference:
                runs.append((impl, reference(args.reference, depth, args, compiled=impl == "reference-compiled")))
        flops = next((r["flops_per_token"] for _, r in runs if "flops_per_token" in r), None)
        ours_run = dict(runs).get("ours")
        for impl, r in runs:
            row(depth, IMPLS[impl], r, flops)
            if impl.startswith("reference") and ours_run:
                print(f"| {depth} | ours / {IMPLS[impl].split(' (')[0]} | {ours_run['step_ms'] / r['step_ms']:.2f}x time | "
                      f"{ours_run['tok_per_sec'] / r['tok_per_sec']:.2f}x | | |")
        if not args.reference and any(i.startswith("reference") for i in args.impls):
            print(f"| {depth} | reference | (no checkout: pass --reference or set NANOCHAT_REFERENCE) | | | |")
        for impl, r in runs:
            if impl.startswith("ours"):
                print(f"\n{impl}, depth {depth}: {json.dumps(r)}")


if __name__ == "__main__":
    main()
