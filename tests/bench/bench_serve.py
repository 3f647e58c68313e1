"""Server load: `nanochat serve` under 1, 8 and 32 concurrent streaming clients (OpenAI's
/v1/chat/completions, stream=True, temperature 0.8, a fixed max_tokens, a distinct seed per request):
requests/s, latency to the last byte (p50/p99), time to the first content token (p50/p99), generated tokens/s,
errors (any non-200, e.g. 503, or a broken stream) and the server's peak resident memory.

The server is started here on 127.0.0.1 (any free port) with --queue-limit >= the most clients, a queue
timeout longer than a level (so no 503 is expected) and OMP_WAIT_POLICY=PASSIVE unless set otherwise; it is
stopped at the end (SIGTERM, then SIGKILL), also on an error or Ctrl-C. Each level is bounded in count
(--requests, default 8 per client, at most 256) and in time (--duration-cap seconds: no request starts after
it; one still running --grace seconds later is cut and counted as an error). Each worker decodes its requests
together (continuous batching, up to --max-batch sequences): throughput grows with the clients until the batch
or the machine is full. Peak RSS: the largest VmRSS sampled every 100 ms during the level (VmHWM, the
process's all-time high, is in --out).

Default model: the tiny random d2 golden checkpoint (runs anywhere); pass a trained one with --checkpoint.

usage: .venv/bin/python tests/bench/bench_serve.py [--bin target/release/nanochat] [--checkpoint DIR
       --tokenizer PATH] [--clients 1 8 32] [--requests N] [--duration-cap S] [--max-tokens M] [--out JSON]
       [--serve-arg=--max-batch=16 ...]"""
import argparse, http.client, json, os, resource, select, signal, socket, subprocess, sys, tempfile, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEMPERATURE = 0.8
PROMPT = "Write a short story about a robot who learns to paint, in about one hundred words."


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


class Server:
    def __init__(self, args, queue_limit, queue_timeout):
        self.log = tempfile.NamedTemporaryFile(prefix="bench_serve_", suffix=".log", delete=False)
        cmd = [args.bin, "serve", "--checkpoint", args.checkpoint, "--tokenizer", args.tokenizer,
               "--host", "127.0.0.1", "--port", "0", "--queue-limit", str(queue_limit),
               "--queue-timeout", str(queue_timeout)] + args.serve_args
        self.cmd = cmd
        # libgomp's spinning threads collapse throughput (steps of 100+ ms, for either server) when the
        # CPU is shared with the clients or other work; sleeping waiters keep the figures comparable.
        env = dict(os.environ)
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        self.omp_wait_policy = env["OMP_WAIT_POLICY"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL, env=env)
        self.port = self.model = self.workers_line = None
        deadline = time.monotonic() + args.start_timeout
        buf = b""
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                self.fail(f"no listening line within {args.start_timeout} s")
            ready, _, _ = select.select([self.proc.stdout], [], [], min(left, 0.5))
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    self.fail("exited before listening")
                buf += chunk
            elif self.proc.poll() is not None:
                self.fail(f"exited with status {self.proc.returncode} before listening")
        line = buf.split(b"\n", 1)[0].decode()
        # nanochat serve: listening on http://127.0.0.1:PORT (MODEL on N worker(s))
        try:
            url = line.split("listening on ", 1)[1].split()[0]
            self.port = int(url.rsplit(":", 1)[1])
            self.model = line.split("(", 1)[1].split(" on ", 1)[0]
        except (IndexError, ValueError):
            self.fail(f"unexpected first line: {line!r}")
        # Keep draining stdout so the server can never block on a full pipe.
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def log_tail(self, n=20):
        try:
            with open(self.log.name, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def fail(self, why):
        self.stop()
        raise SystemExit(f"error: `{' '.join(self.cmd)}` {why}\n{self.log_tail()}")

    def get(self, path):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                raise RuntimeError(f"GET {path}: HTTP {resp.status} {body[:200]!r}")
            return json.loads(body)
        finally:
            conn.close()

    def wait_idle(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = self.get("/stats")
            if s["busy_workers"] == 0 and s["queued_requests"] == 0:
                return s
            time.sleep(0.1)
        raise RuntimeError(f"the server is still busy {timeout} s after the level: {s}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        try:
            os.unlink(self.log.name)
        except OSError:
            pass


def request_body(model, max_tokens, seed):
    return json.dumps({"model": model, "messages": [{"role": "user", "content": PROMPT}], "stream": True,
                       "stream_options": {"include_usage": True}, "temperature": TEMPERATURE,
                       "max_tokens": max_tokens, "seed": seed})


def one_request(port, body, timeout, register):
    """One streaming request: (status, latency_s, ttft_s or None, completion tokens, error or None)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    register(conn)
    t0 = time.perf_counter()
    try:
        conn.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            resp.read()
            return resp.status, time.perf_counter() - t0, None, 0, f"HTTP {resp.status}"
        ttft, chunks, usage, done = None, 0, None, False
        while True:
            line = resp.readline()
            if not line:
                break
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                done = True
                continue
            ev = json.loads(data)
            if "error" in ev:
                return 200, time.perf_counter() - t0, ttft, 0, f"stream error: {ev['error'].get('message')}"
            for c in ev.get("choices") or []:
                if (c.get("delta") or {}).get("content"):
                    chunks += 1
                    if ttft is None:
                        ttft = time.perf_counter() - t0
            if ev.get("usage"):
                usage = ev["usage"]
        latency = time.perf_counter() - t0
        if not done:
            return 200, latency, ttft, 0, "stream ended without [DONE]"
        tokens = usage["completion_tokens"] if usage else chunks
        return 200, latency, ttft, tokens, None
    except (OSError, http.client.HTTPException, ValueError) as e:
        return None, time.perf_counter() - t0, None, 0, f"{type(e).__name__}: {e}"
    finally:
        conn.close()


def run_level(server, args, clients, n_requests, seed_base):
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

    def client(ci):
        while True:
            with lock:
                if issued[0] >= n_requests or time.perf_counter() >= stop_issuing:
                    return
                i = issued[0]
                issued[0] += 1
            body = request_body(server.model, args.max_tokens, seed_base + i)
            r = one_request(server.port, body, args.duration_cap + args.grace + 60, register)
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
    threads = [threading.Thread(target=client, args=(ci,), daemon=True) for ci in range(clients)]
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
    errors = [r[4] for r in results if r[4] is not None]
    kinds = {}
    for e in errors:
        key = e if len(e) < 40 else e[:37] + "..."
        kinds[key] = kinds.get(key, 0) + 1
    lat = [r[1] for r in ok]
    ttft = [r[2] for r in ok if r[2] is not None]
    tokens = sum(r[3] for r in ok)
    return {
        "clients": clients, "requests": len(results), "ok": len(ok), "errors": len(errors), "error_kinds": kinds,
        "wall_s": wall, "requests_per_s": len(ok) / wall, "latency_p50_ms": ms(percentile(lat, 0.5)),
        "latency_p99_ms": ms(percentile(lat, 0.99)), "ttft_p50_ms": ms(percentile(ttft, 0.5)),
        "ttft_p99_ms": ms(percentile(ttft, 0.99)),
        "completion_tokens": tokens, "tokens_per_s": tokens / wall, "peak_rss_mib": peak[0] / 2**20,
        "vmhwm_mib": status["VmHWM"] / 2**20, "server_cpu_s": server_cpu, "client_cpu_s": client_cpu,
    }


def ms(x):
    return None if x is None else x * 1e3


def fmt(x, spec=".0f"):
    return "-" if x is None else format(x, spec)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "nanochat"))
    ap.add_argument("--checkpoint", default=os.path.join(ROOT, "tests", "golden", "chat", "base_d2"))
    ap.add_argument("--tokenizer", default=os.path.join(ROOT, "tests", "golden", "chat", "tokenizer.ranks"))
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--requests", type=int, help="requests per level (default 8 per client, at most 256)")
    ap.add_argument("--duration-cap", type=float, default=60.0, help="seconds per level in which requests start")
    ap.add_argument("--grace", type=float, default=30.0, help="seconds after the cap before running requests are cut")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--start-timeout", type=float, default=300.0, help="seconds to wait for the server to listen")
    ap.add_argument("--out", help="also write the results as JSON here")
    ap.add_argument("--serve-arg", dest="serve_args", action="append", default=[],
                    help="one more argument for `nanochat serve` (repeatable), e.g. --serve-arg=--max-batch=16")
    args = ap.parse_args()
    if min(args.clients) < 1:
        ap.error("--clients must be >= 1")

    # SIGTERM (e.g. from make being stopped) unwinds like Ctrl-C, so the server is always stopped.
    def on_sigterm(*_):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_sigterm)
    max_clients = max(args.clients)
    queue_timeout = int(args.duration_cap + args.grace) + 60
    server = Server(args, queue_limit=max(64, 2 * max_clients), queue_timeout=queue_timeout)
    try:
        stats = server.get("/stats")
        workers = stats["total_workers"]
        devices = sorted({w.get("device", "?") for w in stats.get("workers", [])}) or ["?"]
        # Warm-up (not measured): the first request pays one-off costs.
        r = one_request(server.port, request_body(server.model, args.max_tokens, 0), 300, lambda conn: None)
        if r[4] is not None:
            server.fail(f"warm-up request failed: {r[4]}")
        server.wait_idle()
        ckpt = os.path.relpath(args.checkpoint, ROOT) if args.checkpoint.startswith(ROOT) else args.checkpoint
        print(f"Server load: {server.model} ({ckpt}), "
              f"device {'/'.join(d.upper() for d in devices)}, {os.cpu_count()} CPU cores, {workers} worker(s), "
              f"streaming /v1/chat/completions, {args.max_tokens} max tokens, temperature {TEMPERATURE}, "
              f"OMP_WAIT_POLICY={server.omp_wait_policy}, load average {os.getloadavg()[0]:.2f}\n")
        print("| clients | requests | errors | req/s | latency p50 (ms) | latency p99 (ms) | first token p50 (ms) "
              "| first token p99 (ms) | generated tok/s | server peak RSS (MiB) |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        levels = []
        for li, c in enumerate(args.clients):
            n = args.requests if args.requests else min(8 * c, 256)
            before = server.get("/stats")
            lv = run_level(server, args, c, n, seed_base=1_000_000 * (li + 1))
            after = server.wait_idle()
            lv["server_rejected"] = after["rejected_requests"] - before["rejected_requests"]
            lv["server_served"] = after["served_requests"] - before["served_requests"]
            levels.append(lv)
            err = str(lv["errors"])
            if lv["error_kinds"]:
                err += " (" + ", ".join(f"{v}x {k}" for k, v in lv["error_kinds"].items()) + ")"
            print(f"| {c} | {lv['requests']} | {err} | {lv['requests_per_s']:.2f} | {fmt(lv['latency_p50_ms'])} | "
                  f"{fmt(lv['latency_p99_ms'])} | {fmt(lv['ttft_p50_ms'])} | {fmt(lv['ttft_p99_ms'])} | "
                  f"{lv['tokens_per_s']:.1f} | "
                  f"{lv['peak_rss_mib']:.0f} |", flush=True)
        if any(lv["errors"] for lv in levels):
            print("\nwarning: some requests failed or were cut (the queue admits every client, so none should fail)")
        if args.out:
            with open(args.out, "w") as f:
                json.dump({"model": server.model, "checkpoint": args.checkpoint, "devices": devices,
                           "cpu_cores": os.cpu_count(), "workers": workers, "max_tokens": args.max_tokens,
                           "temperature": TEMPERATURE, "duration_cap_s": args.duration_cap, "levels": levels}, f, indent=2)
                f.write("\n")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
