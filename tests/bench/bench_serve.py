"""Server load, side by side: `nanochat serve` and the reference's own scripts/chat_web.py (karpathy/nanochat
10231df) on the same checkpoint, the same machine and the same requests, one server at a time, under 1, 8 and
32 concurrent streaming clients; one markdown table for both.

What is measured, per server and level: requests/s, generated tokens/s, latency to the last byte (p50/p99), time
to the first token event (p50/p99), errors (any non-200, e.g. 503, a broken stream, or a request cut at the time
cap), the server's peak resident memory (the largest VmRSS sampled every 100 ms during the level; VmHWM is in
--out) and the machine's 1-minute load average at the level's end (other work on a shared CPU shows there). Every client speaks the reference's API, POST /chat/completions (SSE `data: {"token", "gpu"}` events
then `data: {"done": true}`), which both servers implement; the request body is the same for both
({"messages", "temperature", "top_k", "max_tokens", "seed"}; the reference ignores the seed and draws its own).
Generated tokens are counted the same way for both: one per `token` event (each server holds a token back while
its text ends in an incomplete UTF-8 character, so an event can carry more than one token); for ours, the exact
count from /stats is in --out.

Models. With --reference, the bench builds its checkpoints with the reference's own code (its GPT and
init_weights, torch.manual_seed(42), then lm_head and the c_proj weights drawn with its _init_weights instead
of zeros, so the logits are not all equal) at each of --depths (model_dim 64·depth, head dim 128, vocab --vocab,
sequence_len 2048), saved in the reference's layout (base_checkpoints/dN/model_000000.pt + meta_000000.json),
which both servers load. Its tokenizer: `nanochat bench tokenizer train` to vocab − 9 ranks on
tests/bench/make_corpus.py's text (--corpus-mb), given to ours as the ranks file and to the reference as the
tiktoken pickle it expects (tokenizer/tokenizer.pkl). Without --reference only ours runs, on --checkpoint and
--tokenizer (default: the tiny d2 golden checkpoint).

Servers. Both listen on 127.0.0.1 (a free port), run on the CPU and are stopped at the end (SIGTERM, then
SIGKILL), also on an error or Ctrl-C. Ours: `nanochat serve --dtype D` for each of --dtypes (float32 is the
reference's CPU precision), --queue-limit >= 2× the most clients and a queue timeout past the level's cap.
The reference: `python -m scripts.chat_web -i base --device-type cpu -d float32` with --reference-python (it
needs torch, fastapi, uvicorn, tiktoken, tokenizers, rustbpe) in the checkout. Both get OMP_WAIT_POLICY=PASSIVE
unless it is set (libgomp's spinning waiters collapse throughput on shared cores, for either server).

Bounds. A level sends --requests-per-client requests per client (at least 8 in all, at most 256), none started
after --duration-cap seconds; one still running --grace seconds later is cut and counted as an error. A warm-up
request (not measured) precedes the levels.

usage: python tests/bench/bench_serve.py [--reference PATH (or env NANOCHAT_REFERENCE)] [--reference-python PY]
       [--depths 2 4] [--vocab 65536] [--dtypes float32 bfloat16] [--clients 1 8 32] [--max-tokens 64]
       [--duration-cap 60] [--grace 60] [--out JSON] [--bin target/release/nanochat]
       [--checkpoint DIR --tokenizer PATH (ours only)] [--serve-arg=--max-batch=16 ...]"""
import argparse, http.client, json, os, resource, shutil, signal, socket, subprocess, sys, tempfile, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Sampling settings of every request (the reference's UI defaults for temperature and top_k).
TEMPERATURE = 0.8
TOP_K = 50
# The same prompts for both servers, request i sending PROMPTS[i % len(PROMPTS)].
PROMPTS = [
    "Write a short story about a robot who learns to paint, in about one hundred words.",
    "Why is the sky blue?",
    "List three uses of a paper clip that are not holding paper together, and explain each one briefly.",
    "What is the capital of France?",
    "Explain how a bicycle stays upright while it moves, for a ten-year-old.",
    "Translate 'good morning, how are you?' into Spanish and German.",
    "Give me a recipe for pancakes with the quantities for four people.",
    "Summarise the rules of chess in a few sentences.",
]
SPECIALS = 9  # nanochat's special tokens, ids after the ranks


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu_s(pid):
    """User + system CPU seconds pid has used (0 when unreadable)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def self_cpu_s():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def proc_status(pid):
    """VmRSS and VmHWM of pid in bytes (0 when unreadable, e.g. not Linux)."""
    out = {"VmRSS": 0, "VmHWM": 0}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key = line.split(":", 1)[0]
                if key in out:
                    out[key] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return out


def percentile(xs, q):
    """Linear interpolation between closest ranks (numpy's default); None for no data."""
    if not xs:
        return None
    xs = sorted(xs)
    pos = (len(xs) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


# ---------------------------------------------------------------------------------------------------------------
# Models: checkpoint and tokenizer made with the reference's code (only with --reference)

BUILD_MODEL = r"""
import json, os, pickle, sys, base64
ref, out, depth, vocab, ranks_path = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
sys.path.insert(0, ref)
import torch, tiktoken
from nanochat.gpt import GPT, GPTConfig
from nanochat.tokenizer import SPLIT_PATTERN, SPECIAL_TOKENS
d = depth * 64
heads = max(1, (d + 127) // 128)
config = dict(sequence_len=2048, vocab_size=vocab, n_layer=depth, n_head=heads, n_kv_head=heads, n_embd=d)
torch.manual_seed(42)
with torch.device("meta"):
    model = GPT(GPTConfig(**config))
model.to_empty(device="cpu")
model.init_weights()
for m in [model.lm_head] + [p for b in model.transformer.h for p in (b.mlp.c_proj, b.attn.c_proj)]:
    model._init_weights(m)  # init_weights zeroes these; random instead, so the logits are not all equal
ckpt = os.path.join(out, "base_checkpoints", f"d{depth}")
os.makedirs(ckpt, exist_ok=True)
torch.save(model.state_dict(), os.path.join(ckpt, "model_000000.pt"))
with open(os.path.join(ckpt, "meta_000000.json"), "w") as f:
    json.dump({"step": 0, "val_bpb": None, "model_config": config, "user_config": {"depth": depth},
               "device_batch_size": 1, "max_seq_len": 2048}, f, indent=2)
ranks = {}
with open(ranks_path) as f:
    for line in f:
        b64, rank = line.split()
        ranks[base64.b64decode(b64)] = int(rank)
assert len(ranks) + len(SPECIAL_TOKENS) == vocab, (len(ranks), vocab)
enc = tiktoken.Encoding(name="rustbpe", pat_str=SPLIT_PATTERN, mergeable_ranks=ranks,
                        special_tokens={s: len(ranks) + i for i, s in enumerate(SPECIAL_TOKENS)})
os.makedirs(os.path.join(out, "tokenizer"), exist_ok=True)
with open(os.path.join(out, "tokenizer", "tokenizer.pkl"), "wb") as f:
    pickle.dump(enc, f)
"""


def build_models(args, work):
    """{depth: (base_dir, checkpoint_dir)} plus the ranks file, all under work."""
    corpus = os.path.join(work, "corpus.jsonl")
    ranks = os.path.join(work, f"tokenizer_{args.vocab}.ranks")
    subprocess.run([sys.executable, os.path.join(ROOT, "tests", "bench", "make_corpus.py"), corpus,
                    str(args.corpus_mb)], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([args.bin, "bench", "tokenizer", "train", corpus, str(args.vocab - SPECIALS), ranks],
                   check=True, stdout=subprocess.DEVNULL)
    models = {}
    for depth in args.depths:
        base = os.path.join(work, f"d{depth}")
        subprocess.run([args.reference_python, "-c", BUILD_MODEL, args.reference, base, str(depth),
                        str(args.vocab), ranks], check=True)
        models[depth] = (base, os.path.join(base, "base_checkpoints", f"d{depth}"))
    return models, ranks


# ---------------------------------------------------------------------------------------------------------------
# Servers

class Server:
    """One server process on 127.0.0.1:port, ready once GET /health says so; its output goes to a log file."""

    def __init__(self, name, cmd, cwd, env_extra, args):
        self.name, self.cmd = name, cmd
        self.log = tempfile.NamedTemporaryFile(prefix="bench_serve_", suffix=".log", delete=False)
        env = dict(os.environ, **env_extra)
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        self.omp_wait_policy = env["OMP_WAIT_POLICY"]
        self.port = int(cmd[cmd.index("--port") + 1])
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + args.start_timeout
        while True:
            if self.proc.poll() is not None:
                self.fail(f"exited with status {self.proc.returncode} before answering /health")
            try:
                if self.get("/health", timeout=2).get("ready"):
                    break
            except (OSError, http.client.HTTPException, RuntimeError, ValueError):
                pass
            if time.monotonic() > deadline:
                self.fail(f"not ready within {args.start_timeout} s")
            time.sleep(0.2)

    def log_tail(self, n=20):
        try:
            with open(self.log.name, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def fail(self, why):
        tail = self.log_tail()
        self.stop()
        raise SystemExit(f"error: `{' '.join(self.cmd)}` {why}\n{tail}")

    def get(self, path, timeout=30):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                raise RuntimeError(f"GET {path}: HTTP {resp.status} {body[:200]!r}")
            return json.loads(body)
        finally:
            conn.close()

    def wait_idle(self, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = self.get("/stats")
            if s["busy_workers"] == 0 and s.get("queued_requests", 0) == 0:
                return s
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} is still busy {timeout} s after the level: {s}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        try:
            os.unlink(self.log.name)
        except OSError:
            pass


def start_ours(args, checkpoint, tokenizer, dtype):
    queue_timeout = int(args.duration_cap + args.grace) + 60
    cmd = [args.bin, "serve", "--checkpoint", checkpoint, "--tokenizer", tokenizer, "--dtype", dtype,
           "--host", "127.0.0.1", "--port", str(free_port()), "--queue-limit", str(max(64, 2 * max(args.clients))),
           "--queue-timeout", str(queue_timeout)] + args.serve_args
    return Server(f"nanochat serve ({dtype})", cmd, ROOT, {}, args)


def start_reference(args, base_dir):
    cmd = [args.reference_python, "-m", "scripts.chat_web", "-i", "base", "--device-type", "cpu", "-d", "float32",
           "--host", "127.0.0.1", "--port", str(free_port())]
    return Server("reference chat_web.py (float32)", cmd, args.reference, {"NANOCHAT_BASE_DIR": base_dir}, args)


# ---------------------------------------------------------------------------------------------------------------
# Clients

def request_body(i, max_tokens):
    return json.dumps({"messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
                       "temperature": TEMPERATURE, "top_k": TOP_K, "max_tokens": max_tokens, "seed": i})


def one_request(port, body, timeout, register):
    """One streaming request: (status, latency_s, ttft_s or None, token events, error or None)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    register(conn)
    t0 = time.perf_counter()
    try:
        conn.request("POST", "/chat/completions", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            resp.read()
            return resp.status, time.perf_counter() - t0, None, 0, f"HTTP {resp.status}"
        ttft, events, done = None, 0, False
        while True:
            line = resp.readline()
            if not line:
                break
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            ev = json.loads(line[5:])
            if "error" in ev:
                return 200, time.perf_counter() - t0, ttft, events, f"stream error: {ev['error']}"
            if ev.get("token"):
                events += 1
                if ttft is None:
                    ttft = time.perf_counter() - t0
            if ev.get("done"):
                done = True
        latency = time.perf_counter() - t0
        if not done:
            return 200, latency, ttft, events, "stream ended without done"
        return 200, latency, ttft, events, None
    except (OSError, http.client.HTTPException, ValueError) as e:
        return None, time.perf_counter() - t0, None, 0, f"{type(e).__name__}: {e}"
    finally:
        conn.close()


def run_level(server, args, clients, n_requests):
    lock = threading.Lock()
    results, conns = [], set()
    issued = [0]
    cpu0 = (proc_cpu_s(server.proc.pid), self_cpu_s())
    t_start = time.perf_counter()
    stop_issuing = t_start + args.duration_cap
    cut_at = stop_issuing + args.grace
    level_over = threading.Event()

    def register(conn):
        with lock:
            conns.add(conn)

    def client():
        while True:
            with lock:
                if issued[0] >= n_requests or time.perf_counter() >= stop_issuing:
                    return
                i = issued[0]
                issued[0] += 1
            r = one_request(server.port, request_body(i, args.max_tokens), args.duration_cap + args.grace + 60,
                            register)
            if r[4] is not None and time.perf_counter() >= cut_at:
                r = r[:4] + ("cut at the time cap",)
            with lock:
                results.append(r)

    peak = [0]

    def sampler():
        while not level_over.is_set():
            peak[0] = max(peak[0], proc_status(server.proc.pid)["VmRSS"])
            level_over.wait(0.1)

    sampler_thread = threading.Thread(target=sampler, daemon=True)
    sampler_thread.start()
    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, cut_at - time.perf_counter()))
    if any(t.is_alive() for t in threads):  # past the cap and the grace: cut what is still running
        with lock:
            for conn in list(conns):
                try:
                    if conn.sock is not None:
                        conn.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        for t in threads:
            t.join(30)
    wall = time.perf_counter() - t_start
    server_cpu, client_cpu = proc_cpu_s(server.proc.pid) - cpu0[0], self_cpu_s() - cpu0[1]
    level_over.set()
    sampler_thread.join()
    status = proc_status(server.proc.pid)
    peak[0] = max(peak[0], status["VmRSS"])

    ok = [r for r in results if r[4] is None]
    kinds = {}
    for e in (r[4] for r in results if r[4] is not None):
        key = e if len(e) < 40 else e[:37] + "..."
        kinds[key] = kinds.get(key, 0) + 1
    lat = [r[1] for r in ok]
    ttft = [r[2] for r in ok if r[2] is not None]
    tokens = sum(r[3] for r in ok)
    return {
        "clients": clients, "requests": len(results), "ok": len(ok), "errors": len(results) - len(ok),
        "error_kinds": kinds, "wall_s": wall, "requests_per_s": len(ok) / wall,
        "latency_p50_ms": ms(percentile(lat, 0.5)), "latency_p99_ms": ms(percentile(lat, 0.99)),
        "ttft_p50_ms": ms(percentile(ttft, 0.5)), "ttft_p99_ms": ms(percentile(ttft, 0.99)),
        "token_events": tokens, "tokens_per_s": tokens / wall, "peak_rss_mib": peak[0] / 2**20,
        "vmhwm_mib": status["VmHWM"] / 2**20, "server_cpu_s": server_cpu, "client_cpu_s": client_cpu,
    }


def ms(x):
    return None if x is None else x * 1e3


def fmt(x, spec=",.0f"):
    return "-" if x is None else format(x, spec)


def bench_server(server, args, label, rows):
    """Warm-up, then every level; prints a table row per level and appends it to rows."""
    r = one_request(server.port, request_body(0, args.max_tokens), 300, lambda conn: None)
    if r[4] is not None:
        server.fail(f"warm-up request failed: {r[4]}")
    server.wait_idle()
    for c in args.clients:
        n = max(8, min(args.requests_per_client * c, 256))
        before = server.get("/stats")
        lv = run_level(server, args, c, n)
        after = server.wait_idle()
        if "generated_tokens" in after:  # ours: the exact count next to the events
            lv["generated_tokens"] = after["generated_tokens"] - before["generated_tokens"]
        lv.update(model=label["model"], server=label["server"], load_average=os.getloadavg())
        rows.append(lv)
        err = str(lv["errors"])
        if lv["error_kinds"]:
            err += " (" + ", ".join(f"{v}x {k}" for k, v in lv["error_kinds"].items()) + ")"
        print(f"| {label['model']} | {label['server']} | {c} | {lv['requests']} | {err} | {lv['requests_per_s']:.2f} | "
              f"{lv['tokens_per_s']:,.1f} | {fmt(lv['latency_p50_ms'])} / {fmt(lv['latency_p99_ms'])} | "
              f"{fmt(lv['ttft_p50_ms'])} / {fmt(lv['ttft_p99_ms'])} | {lv['peak_rss_mib']:,.0f} | "
              f"{lv['load_average'][0]:.2f} |", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "nanochat"))
    ap.add_argument("--reference", default=os.environ.get("NANOCHAT_REFERENCE"),
                    help="a karpathy/nanochat checkout at 10231df (env NANOCHAT_REFERENCE); without it only ours runs")
    ap.add_argument("--reference-python", default=sys.executable,
                    help="the Python that runs the reference (torch, fastapi, uvicorn, tiktoken, tokenizers, rustbpe)")
    ap.add_argument("--depths", type=int, nargs="+", default=[2, 4], help="with --reference: models built, one each")
    ap.add_argument("--vocab", type=int, default=65536, help="with --reference: vocab of the built models")
    ap.add_argument("--corpus-mb", type=float, default=40, help="with --reference: text the tokenizer is trained on")
    ap.add_argument("--checkpoint", default=os.path.join(ROOT, "tests", "golden", "chat", "base_d2"),
                    help="without --reference: the checkpoint ours serves")
    ap.add_argument("--tokenizer", default=os.path.join(ROOT, "tests", "golden", "chat", "tokenizer.ranks"),
                    help="without --reference: its tokenizer")
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], help="ours: one run per --dtype")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--requests-per-client", type=int, default=4, help="per level (at least 8, at most 256 in all)")
    ap.add_argument("--duration-cap", type=float, default=60.0, help="seconds per level in which requests start")
    ap.add_argument("--grace", type=float, default=60.0, help="seconds after the cap before running requests are cut")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--start-timeout", type=float, default=300.0, help="seconds to wait for a server to be ready")
    ap.add_argument("--work", help="keep the built models here (default: a temporary directory, removed)")
    ap.add_argument("--out", help="also write the results as JSON here")
    ap.add_argument("--serve-arg", dest="serve_args", action="append", default=[],
                    help="one more argument for `nanochat serve` (repeatable), e.g. --serve-arg=--max-batch=16")
    args = ap.parse_args()
    if min(args.clients) < 1:
        ap.error("--clients must be >= 1")

    # SIGTERM (e.g. from make being stopped) unwinds like Ctrl-C, so the servers are always stopped.
    def on_sigterm(*_):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_sigterm)
    work = args.work or tempfile.mkdtemp(prefix="bench_serve_")
    os.makedirs(work, exist_ok=True)
    rows, server = [], None
    try:
        if args.reference:
            models, ranks = build_models(args, work)
            plan = [(f"d{d} (vocab {args.vocab:,})", base, ckpt, ranks) for d, (base, ckpt) in models.items()]
        else:
            ckpt = os.path.relpath(args.checkpoint, ROOT) if args.checkpoint.startswith(ROOT) else args.checkpoint
            plan = [(ckpt, None, args.checkpoint, args.tokenizer)]
        print(f"Server load on {os.cpu_count()} CPU cores: streaming POST /chat/completions, {args.max_tokens} max "
              f"tokens, temperature {TEMPERATURE}, top_k {TOP_K}, clients on the same machine, "
              f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'PASSIVE')}, "
              f"load average {os.getloadavg()[0]:.2f} at the start\n")
        print("| model | server | clients | requests | errors | req/s | generated tok/s | latency p50 / p99 (ms) "
              "| first token p50 / p99 (ms) | server peak RSS (MiB) | load average |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for model, base, ckpt, tokenizer in plan:
            for dtype in args.dtypes:
                server = start_ours(args, ckpt, tokenizer, dtype)
                bench_server(server, args, {"model": model, "server": f"nanochat serve, {dtype}"}, rows)
                server.stop()
            if base is not None:
                server = start_reference(args, base)
                bench_server(server, args, {"model": model, "server": "reference chat_web.py, float32"}, rows)
                server.stop()
            server = None
        print(f"\nload average at the end {os.getloadavg()[0]:.2f}")
        if any(r["errors"] for r in rows):
            print("warning: some requests failed or were cut at the time cap")
        for r in rows:
            if "generated_tokens" in r:
                print(f"{r['model']}, {r['server']}, {r['clients']} clients: {r['token_events']} token events for "
                      f"{r['generated_tokens']} generated tokens (/stats)")
        if args.reference:
            print()
            for model, *_ in plan:
                ref = {r["clients"]: r for r in rows if r["model"] == model and r["server"].startswith("reference")}
                for r in rows:
                    if r["model"] == model and r["server"].startswith("nanochat") and r["clients"] in ref:
                        x = ref[r["clients"]]
                        print(f"{model}, {r['clients']} clients: {r['server']} / reference: "
                              f"{r['tokens_per_s'] / max(x['tokens_per_s'], 1e-9):.2f}x generated tok/s, "
                              f"first token p99 {fmt(r['ttft_p99_ms'])} vs {fmt(x['ttft_p99_ms'])} ms")
        if args.out:
            with open(args.out, "w") as f:
                json.dump({"cpu_cores": os.cpu_count(), "max_tokens": args.max_tokens, "temperature": TEMPERATURE,
                           "top_k": TOP_K, "duration_cap_s": args.duration_cap, "grace_s": args.grace,
                           "reference": args.reference, "levels": rows}, f, indent=2)
                f.write("\n")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    finally:
        if server is not None:
            server.stop()
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
