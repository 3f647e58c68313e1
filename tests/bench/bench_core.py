"""CORE evaluation speed: `nanochat base-eval --bundle` next to the reference's core_eval
(karpathy/nanochat scripts/base_eval.py evaluate_model) on the same weights (a depth-D GPT, seed 42,
init_weights, its zero matrices filled with seeded noise so every layer computes), the same tokenizer
(tests/golden/chat, vocab 2,048) and the same generated bundle in the real layout (multiple choice
with 5 shots, schema, language modeling with 3 shots and zero-shot), on CPU, one after the other, in
one run: examples per second over the whole bundle. Both CORE values are printed: they must agree.

usage: .venv/bin/python tests/bench/bench_core.py [--bin target/release/nanochat] [--depth 4]
       [--examples 60] [--reference PATH-TO-NANOCHAT-CHECKOUT]   (or env NANOCHAT_REFERENCE; commit 10231df;
       the reference also needs PyYAML importable, e.g. pip install --target DIR pyyaml and PYTHONPATH=DIR)"""
import argparse, json, os, random, re, shutil, subprocess, sys, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GOLDEN_CHAT = os.path.join(ROOT, "tests", "golden", "chat")
WORDS = ("time year people way day man thing woman life child world school state family student group country "
         "problem hand part place case week company system program question work government number night point "
         "home water room mother area money story fact month lot right study book eye job word business issue "
         "side kind head house service friend father power hour game line end member law car city name team").split()


def sentence(rng, n):
    return " ".join(rng.choice(WORDS) for _ in range(n))


def write_bundle(root, examples):
    rng = random.Random(0)
    tasks = [
        ("mc_5shot", "multiple_choice", 5, "\\nAnswer: ", 25, "mc.jsonl",
         lambda: {"query": "Question: " + sentence(rng, 12) + "?", "choices": [sentence(rng, 3) for _ in range(4)],
                  "gold": rng.randrange(4)}),
        ("schema_0shot", "schema", 0, " ", 50, "schema.jsonl",
         lambda: {"context_options": [sentence(rng, 14), sentence(rng, 14)], "continuation": sentence(rng, 5),
                  "gold": rng.randrange(2)}),
        ("lm_3shot", "language_modeling", 3, " ", 0, "lm.jsonl",
         lambda: {"context": sentence(rng, 20), "continuation": sentence(rng, 2)}),
        ("lm_0shot", "language_modeling", 0, "\\nAnswer: ", 0, "lm0.jsonl",
         lambda: {"context": sentence(rng, 40), "continuation": sentence(rng, 3)}),
    ]
    os.makedirs(os.path.join(root, "eval_data"), exist_ok=True)
    yaml = ["icl_tasks:"]
    meta = ["Eval Task,Task Category,Task Type,#shots,Random baseline,Centered Metric?,Description"]
    for label, kind, shots, delim, baseline, uri, make in tasks:
        yaml += ["-", f"  label: {label}", f"  dataset_uri: {uri}", f"  num_fewshot: [{shots}]",
                 f"  icl_task_type: {kind}", f'  continuation_delimiter: "{delim}"']
        meta.append(f"{label},bench,{kind},{shots},{baseline},,")
        with open(os.path.join(root, "eval_data", uri), "w") as f:
            for _ in range(examples):
                f.write(json.dumps(make()) + "\n")
    with open(os.path.join(root, "core.yaml"), "w") as f:
        f.write("\n".join(yaml) + "\n")
    with open(os.path.join(root, "eval_meta_data.csv"), "w") as f:
        f.write("\n".join(meta) + "\n")
    return len(tasks) * examples


def make_model(args, base):
    """The weights in the reference's checkpoint format, written by the reference's GPT."""
    code = f"""
import sys, json, os, torch
sys.path.insert(0, {args.reference!r})
from nanochat.gpt import GPT, GPTConfig
d = {args.depth} * 64
cfg = dict(sequence_len=2048, vocab_size=2048, n_layer={args.depth}, n_head=max(1, (d + 127) // 128),
           n_kv_head=max(1, (d + 127) // 128), n_embd=d)
torch.manual_seed(42)
with torch.device("meta"):
    model = GPT(GPTConfig(**cfg))
model.to_empty(device="cpu"); model.init_weights()
state = model.state_dict()
for name in sorted(state):
    if name == "lm_head.weight" or name.endswith("c_proj.weight"):
        state[name] = torch.randn_like(state[name]) * 0.1
out = os.path.join({base!r}, "base_d{args.depth}")
os.makedirs(out, exist_ok=True)
torch.save(state, os.path.join(out, "model_000000.pt"))
json.dump({{"step": 0, "model_config": cfg}}, open(os.path.join(out, "meta_000000.json"), "w"))
"""
    subprocess.run([sys.executable, "-c", code], check=True)


def ours(args, base, bundle):
    cmd = [args.bin, "--preset", "d20", "base-eval", "--bundle", bundle]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env={**os.environ, "NANOCHAT_BASE_DIR": base})
    m = re.search(r"CORE metric: (-?[0-9.]+) \((\d+) examples in ([0-9.]+)s", out.stderr + out.stdout)
    return {"core": float(m.group(1)), "examples": int(m.group(2)), "seconds": float(m.group(3))}


def reference(args, base, bundle):
    code = f"""
import sys, json, os, shutil, time, torch
sys.path.insert(0, {args.reference!r})
os.environ["NANOCHAT_BASE_DIR"] = {base!r}
shutil.copytree({bundle!r}, os.path.join({base!r}, "eval_bundle"), dirs_exist_ok=True)
from nanochat.gpt import GPT, GPTConfig
from nanochat.tokenizer import RustBPETokenizer
import scripts.base_eval as base_eval
d = os.path.join({base!r}, "base_d{args.depth}")
meta = json.load(open(os.path.join(d, "meta_000000.json")))
with torch.device("meta"):
    model = GPT(GPTConfig(**meta["model_config"]))
model.to_empty(device="cpu"); model.init_weights()
model.load_state_dict(torch.load(os.path.join(d, "model_000000.pt"), map_location="cpu"), strict=True, assign=True)
model.eval()
tok = RustBPETokenizer.from_directory({GOLDEN_CHAT!r})
t0 = time.perf_counter()
out = base_eval.evaluate_model(model, tok, "cpu", max_per_task=-1)
print(json.dumps({{"core": out["core_metric"], "seconds": time.perf_counter() - t0}}))
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "nanochat"))
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--examples", type=int, default=60, help="examples per task (4 tasks)")
    ap.add_argument("--reference", default=os.environ.get("NANOCHAT_REFERENCE"))
    args = ap.parse_args()
    if not args.reference:
        print("CORE bench: needs the reference checkout for the shared weights (pass --reference or set NANOCHAT_REFERENCE)")
        return
    with tempfile.TemporaryDirectory() as base:
        bundle = os.path.join(base, "bundle")
        total = write_bundle(bundle, args.examples)
        tok = os.path.join(base, "tok")
        os.makedirs(tok)
        shutil.copy(os.path.join(GOLDEN_CHAT, "tokenizer.ranks"), tok)
        with open(os.path.join(GOLDEN_CHAT, "tokenizer_meta.json")) as f:
            json.dump(json.load(f)["token_bytes"], open(os.path.join(tok, "token_bytes.json"), "w"))
        make_model(args, base)
        print(f"CORE on CPU: depth {args.depth}, vocab 2048, {total} examples (4 tasks: MC 5-shot, schema, LM 3-shot, "
              f"LM 0-shot), {os.cpu_count()} CPU threads, load average {os.getloadavg()[0]:.2f}\n")
        print("| impl | examples | seconds | examples/s | CORE |")
        print("|---|---|---|---|---|")
        o = ours(args, base, bundle)
        print(f"| nanochat (Rust) | {o['examples']} | {o['seconds']:.2f} | {o['examples'] / o['seconds']:.1f} | {o['core']:.4f} |")
        try:
            r = reference(args, base, bundle)
        except subprocess.CalledProcessError as e:
            print(f"| reference | (failed: {e.stderr.strip().splitlines()[-1] if e.stderr else e}) | | | |")
            return
        print(f"| reference (PyTorch) | {total} | {r['seconds']:.2f} | {total / r['seconds']:.1f} | {r['core']:.4f} |")
        print(f"| ours / reference | | | {r['seconds'] / o['seconds']:.2f}x | |")


if __name__ == "__main__":
    main()
