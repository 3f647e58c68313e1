//! `nanochat serve` end to end on 127.0.0.1 with the reference's d2 weights: the page, both chat APIs
//! (checked against the engine run in-process on the same prompt), the §9 limits, abuse (malformed
//! and oversized bodies, a slow body, a full queue, a client that leaves, a burst of clients half of
//! which leave mid-stream, a request larger than the KV cache), the official `openai`
//! Python client, curl, and the chat page in headless Chromium (screenshot kept in
//! target/test-artifacts/serve-ui.png).
#[path = "support/chat_fixtures.rs"]
mod chat_fixtures;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chat_fixtures::{golden_d2_model, golden_dir, golden_encoder, root};
use nanochat::engine::chat_engine::Engine;
use nanochat::serve::request::{Role, Turn};
use nanochat::serve::workers::{prompt_tokens, settings};
use serde_json::{json, Value};

/// A running server; killed on drop. Its log (stderr) goes to a file.
struct Server {
    child: Child,
    port: u16,
    log: tempfile::NamedTempFile,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        Self::start_with_open_files(extra, None)
    }

    /// The server with its open-file limit (RLIMIT_NOFILE) set to `open_files`, as `ulimit -n`.
    fn start_with_open_files(extra: &[&str], open_files: Option<u64>) -> Server {
        use std::os::unix::process::CommandExt;
        let log = tempfile::NamedTempFile::new().unwrap();
        let checkpoint = golden_dir().join("base_d2");
        let tokenizer = golden_dir().join("tokenizer.ranks");
        let mut command = Command::new(env!("CARGO_BIN_EXE_nanochat"));
        command
            .args(["serve", "--host", "127.0.0.1", "--port", "0", "--checkpoint"])
            .arg(&checkpoint)
            .arg("--tokenizer")
            .arg(&tokenizer)
            .args(extra)
            .env("NANOCHAT_BASE_DIR", tempfile::tempdir().unwrap().keep())
            .stdout(Stdio::piped())
            .stderr(log.reopen().unwrap());
        if let Some(n) = open_files {
            // SAFETY: setrlimit is async-signal-safe; it only lowers this child's own limit.
            unsafe {
                command.pre_exec(move || {
                    let limit = libc::rlimit { rlim_cur: n, rlim_max: n };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                })
            };
        }
        let mut child = command.spawn().expect("the nanochat binary starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line
            .split("http://127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| {
                panic!("no listening line: {line:?}; log: {}", std::fs::read_to_string(log.path()).unwrap())
            });
        Server { child, port, log }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap()
    }

    fn get(&self, path: &str) -> (u16, String) {
        let mut response = agent().get(self.url(path)).call().unwrap();
        (response.status().as_u16(), response.body_mut().read_to_string().unwrap())
    }

    /// Status, Retry-After, body.
    fn post(&self, path: &str, body: &str) -> (u16, Option<String>, String) {
        let mut response = agent().post(self.url(path)).header("content-type", "application/json").send(body).unwrap();
        let retry = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
        (response.status().as_u16(), retry, response.body_mut().read_to_string().unwrap())
    }

    fn stats(&self) -> Value {
        serde_json::from_str(&self.get("/stats").1).unwrap()
    }

    /// A raw connection that has sent `body` to `path` and read the response headers.
    fn open_stream(&self, path: &str, body: &Value) -> BufReader<TcpStream> {
        let mut socket = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let body = body.to_string();
        write!(
            socket,
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut reader = BufReader::new(socket);
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        reader
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    agent_with_timeout(Duration::from_secs(120))
}

fn agent_with_timeout(timeout: Duration) -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::config::Config::builder().http_status_as_error(false).timeout_global(Some(timeout)).build(),
    )
}

/// The JSON payloads of an SSE body.
fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|event| event.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(str::to_string)
        .collect()
}

/// What the engine generates in-process for `turns` with the server's settings (temperature,
/// seed) and its own sampling generator, decoded.
fn engine_reply(turns: &[Turn], max_tokens: usize, temperature: f64, seed: i64) -> String {
    let encoder = golden_encoder();
    let model = golden_d2_model();
    let engine = Engine::new(&model, &encoder).unwrap();
    let prompt = prompt_tokens(&engine, turns);
    let (rows, _) = engine.generate_batch(&prompt, &settings(1, max_tokens, temperature, 50, Some(seed)));
    encoder.decode_lossy(&rows[0][prompt.len()..]).unwrap()
}

fn python() -> PathBuf {
    std::env::var_os("NANOCHAT_PYTHON").map_or_else(|| root().join(".venv/bin/python"), PathBuf::from)
}

#[test]
fn page_logo_health_stats_and_models() {
    let server = Server::start(&[]);
    let (status, page) = server.get("/");
    assert_eq!(status, 200);
    assert!(page.contains("<html") && page.contains("logo.svg"), "{}", &page[..page.len().min(300)]);
    let logo = agent().get(server.url("/logo.svg")).call().unwrap();
    assert_eq!(logo.headers().get("content-type").unwrap(), "image/svg+xml");
    let health: Value = serde_json::from_str(&server.get("/health").1).unwrap();
    assert_eq!(health, json!({"status": "ok", "ready": true, "num_gpus": 1, "available_workers": 1}));
    let stats = server.stats();
    assert_eq!((stats["total_workers"].as_u64(), stats["busy_workers"].as_u64()), (Some(1), Some(0)));
    assert_eq!(stats["workers"], json!([{"gpu_id": 0, "device": "cpu"}]));
    assert_eq!((stats["running_sequences"].as_u64(), stats["kv_blocks_in_use"].as_u64()), (Some(0), Some(0)));
    assert!(stats["kv_blocks_total"].as_u64().unwrap() > 0, "{stats}");
    let models: Value = serde_json::from_str(&server.get("/v1/models").1).unwrap();
    assert_eq!(models["data"][0]["id"], "nanochat-checkpoint-d2");
    let (status, body) = server.get("/v1/models/nanochat-checkpoint-d2");
    assert_eq!(
        (status, serde_json::from_str::<Value>(&body).unwrap()["id"].as_str()),
        (200, Some("nanochat-checkpoint-d2"))
    );
    assert_eq!(server.get("/v1/models/gpt-4o").0, 404);
    let (status, body) = server.get("/no/such/page");
    assert_eq!(status, 404);
    assert!(body.contains("no endpoint GET /no/such/page"));
    let (status, body) = server.get("/v1/chat/completions");
    assert_eq!(status, 405);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"]["code"], "method_not_allowed");
    // One log line per request.
    let log = server.log();
    for line in ["GET / 200", "GET /logo.svg 200", "GET /health 200", "GET /stats 200", "GET /v1/models 200"] {
        assert!(log.contains(line), "{line} missing from the log:\n{log}");
    }
}

#[test]
fn the_reference_stream_is_the_engines_reply() {
    let server = Server::start(&[]);
    let messages = json!([{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi!"},
        {"role": "user", "content": "What is 2+2?"}]);
    let turns = vec![
        Turn { role: Role::User, content: "Hello".into() },
        Turn { role: Role::Assistant, content: "Hi!".into() },
        Turn { role: Role::User, content: "What is 2+2?".into() },
    ];
    for (temperature, seed) in [(0.0, 1), (1.0, 7)] {
        let body = json!({"messages": messages, "max_tokens": 40, "temperature": temperature, "seed": seed});
        let (status, _, text) = server.post("/chat/completions", &body.to_string());
        assert_eq!(status, 200, "{text}");
        let events = sse_data(&text);
        assert_eq!(events.last().map(String::as_str), Some(r#"{"done":true}"#));
        let mut reply = String::new();
        for event in &events[..events.len() - 1] {
            let event: Value = serde_json::from_str(event).unwrap();
            assert_eq!(event["gpu"], 0);
            let piece = event["token"].as_str().unwrap();
            assert!(!piece.is_empty());
            reply.push_str(piece);
        }
        assert_eq!(reply, engine_reply(&turns, 40, temperature, seed), "temperature {temperature}");
        // The same seed again: the same reply.
        assert_eq!(server.post("/chat/completions", &body.to_string()).2, text);
    }
    // Without a seed every request draws its own.
    let body = json!({"messages": messages, "max_tokens": 30, "temperature": 1.0}).to_string();
    assert_ne!(server.post("/chat/completions", &body).2, server.post("/chat/completions", &body).2);
    assert!(server.log().contains("POST /chat/completions 200"));
}

#[test]
fn bad_requests_get_json_errors_naming_the_field() {
    let server = Server::start(&["--body-limit", "20000"]);
    let long = "a".repeat(8_001);
    let cases: Vec<(&str, String, u16, Option<&str>)> = vec![
        ("/chat/completions", "{\"messages\": [".into(), 400, None),
        (
            "/chat/completions",
            json!({"messages": [{"role": "user", "content": "hi"}], "bogus": 1}).to_string(),
            400,
            Some("bogus"),
        ),
        (
            "/chat/completions",
            json!({"messages": [{"role": "user", "content": long}]}).to_string(),
            400,
            Some("messages[0].content"),
        ),
        (
            "/chat/completions",
            json!({"messages": [{"role": "user", "content": "hi"}], "top_k": 500}).to_string(),
            400,
            Some("top_k"),
        ),
        (
            "/chat/completions",
            json!({"messages": [{"role": "robot", "content": "hi"}]}).to_string(),
            400,
            Some("messages[0].role"),
        ),
        ("/chat/completions", "x".repeat(20_001), 413, None),
        (
            "/v1/chat/completions",
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}).to_string(),
            404,
            Some("model"),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "hi"}], "temperature": -1}).to_string(),
            400,
            Some("temperature"),
        ),
    ];
    for (path, body, status, param) in cases {
        let (got, _, text) = server.post(path, &body);
        assert_eq!(got, status, "{path} {}: {text}", &body[..body.len().min(80)]);
        let error: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
        assert_eq!(error["error"]["param"].as_str(), param, "{text}");
        assert!(!error["detail"].as_str().unwrap().is_empty());
    }
    // The server is still fine.
    let ok = json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}).to_string();
    assert_eq!(server.post("/chat/completions", &ok).0, 200);
    assert!(server.log().contains("POST /chat/completions 413"));
}

#[test]
fn a_slow_body_times_out() {
    let server = Server::start(&["--read-timeout", "1"]);
    let mut socket = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let began = Instant::now();
    socket.write_all(b"POST /chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"mess").unwrap();
    let mut response = String::new();
    let _ = socket.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("did not arrive within 1 s"), "{response}");
    assert!(began.elapsed() < Duration::from_secs(10));
}

/// A long generation: 8 rows of up to 4,096 tokens at temperature 1.
fn long_request() -> Value {
    json!({"messages": [{"role": "user", "content": "Tell me a long story."}], "max_tokens": 4096, "n": 8,
        "temperature": 1.0, "seed": 3, "stream": true})
}

#[test]
fn a_full_queue_answers_503_and_a_client_that_leaves_frees_its_worker() {
    // A batch of 8 sequences: the 8 completions of the long request fill it.
    let server = Server::start(&["--queue-limit", "0", "--max-batch", "8"]);
    let mut stream = server.open_stream("/v1/chat/completions", &long_request());
    let mut line = String::new();
    while !line.starts_with("data: ") {
        line.clear();
        stream.read_line(&mut line).unwrap();
    }
    assert_eq!(server.stats()["busy_workers"], 1);
    let (status, retry, body) =
        server.post("/chat/completions", &json!({"messages": [{"role": "user", "content": "hi"}]}).to_string());
    assert_eq!(status, 503, "{body}");
    assert_eq!(retry.as_deref(), Some("30"));
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"]["code"], "server_busy");
    // The client leaves mid-stream: the worker stops and is free again.
    drop(stream);
    let began = Instant::now();
    while server.stats()["available_workers"] != 1 {
        assert!(began.elapsed() < Duration::from_secs(30), "the worker was not given back: {}", server.stats());
        std::thread::sleep(Duration::from_millis(20));
    }
    let began = Instant::now();
    while !server.log().contains("(the client left during the stream)") {
        assert!(began.elapsed() < Duration::from_secs(10), "no log line for the cut stream:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = server.log();
    assert!(log.contains("the client left; generation stopped after"), "{log}");
    assert!(log.contains("POST /chat/completions 503"), "{log}");
    let ok = json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}).to_string();
    assert_eq!(server.post("/chat/completions", &ok).0, 200);
    assert_eq!(server.stats()["rejected_requests"], 1);
}

/// 64 streaming clients at once, half of them leaving after a few chunks: the batch runs many sequences
/// at a time, /health answers all along, and once the burst is over no sequence runs and no KV block is
/// held.
#[test]
fn a_burst_with_half_the_clients_leaving_frees_every_kv_block() {
    let server = Server::start(&["--queue-limit", "64"]);
    let done = std::sync::atomic::AtomicBool::new(false);
    let (mut health_ms, mut most_running) = (0.0f64, 0);
    std::thread::scope(|s| {
        let clients: Vec<_> = (0..64)
            .map(|i| {
                let server = &server;
                s.spawn(move || {
                    let body = json!({"messages": [{"role": "user", "content": format!("Story number {i}, please.")}],
                        "max_tokens": 120, "temperature": 1.0, "seed": i, "stream": true});
                    let mut stream = server.open_stream("/v1/chat/completions", &body);
                    let (mut line, mut chunks) = (String::new(), 0);
                    loop {
                        line.clear();
                        if stream.read_line(&mut line).unwrap() == 0 || line.starts_with("data: [DONE]") {
                            return chunks;
                        }
                        chunks += usize::from(line.starts_with("data: "));
                        if i % 2 == 1 && chunks == 4 {
                            return chunks; // the client leaves: the socket is dropped mid-stream
                        }
                    }
                })
            })
            .collect();
        s.spawn(|| {
            let quick = agent_with_timeout(Duration::from_secs(10));
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let asked = Instant::now();
                let status = quick.get(server.url("/health")).call().map(|r| r.status().as_u16());
                assert_eq!(status.ok(), Some(200), "/health during the burst");
                health_ms = health_ms.max(asked.elapsed().as_secs_f64() * 1000.0);
                most_running = most_running.max(server.stats()["running_sequences"].as_u64().unwrap());
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        for client in clients {
            assert!(client.join().unwrap() >= 4);
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    eprintln!("burst: /health answered within {health_ms:.0} ms at worst, up to {most_running} sequences in the batch");
    assert!(most_running > 1, "the clients were served one at a time");
    let began = Instant::now();
    loop {
        let stats = server.stats();
        if stats["running_sequences"] == 0 && stats["kv_blocks_in_use"] == 0 && stats["busy_workers"] == 0 {
            break;
        }
        assert!(began.elapsed() < Duration::from_secs(30), "KV still held after the burst: {stats}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(server.log().contains("the client left; generation stopped after"), "{}", server.log());
}

/// A request whose prompt and max_tokens need more positions than the whole KV cache holds gets a 400
/// naming the limit; one that fits is served.
#[test]
fn a_request_larger_than_the_kv_cache_is_refused() {
    // d2 keeps 2 KiB a position: 1 MiB holds 512, less than the 640 a reply of 4,096 tokens could reach.
    let server = Server::start(&["--kv-cache-mb", "1"]);
    let body = json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4096}).to_string();
    let (status, _, text) = server.post("/v1/chat/completions", &body);
    assert_eq!(status, 400, "{text}");
    let error: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (error["error"]["code"].as_str(), error["error"]["param"].as_str()),
        (Some("kv_cache_exceeded"), Some("max_tokens"))
    );
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("holds 512") && message.contains("--kv-cache-mb"), "{message}");
    let ok = json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100}).to_string();
    assert_eq!(server.post("/v1/chat/completions", &ok).0, 200);
    // The reply can reach the client before its replica's loop has released the sequence (the next step).
    let began = Instant::now();
    while server.stats()["kv_blocks_in_use"] != 0 {
        assert!(began.elapsed() < Duration::from_secs(10), "KV still held after the reply: {}", server.stats());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `--dtype bfloat16` on the CPU: the KV cache holds positions of half the bytes (twice the blocks for the
/// same --kv-cache-mb) and greedy replies are served, the same twice.
#[test]
fn bf16_serving_on_request_halves_the_kv_per_position() {
    let blocks = |server: &Server| server.stats()["kv_blocks_total"].as_u64().unwrap();
    let fp32 = Server::start(&["--kv-cache-mb", "4"]);
    let bf16 = Server::start(&["--kv-cache-mb", "4", "--dtype", "bfloat16"]);
    assert_eq!(blocks(&bf16), 2 * blocks(&fp32));
    assert!(bf16.log().contains("bfloat16 on Cpu"), "{}", bf16.log());
    let body = json!({"messages": [{"role": "user", "content": "Why is the sky blue?"}], "max_tokens": 24,
        "temperature": 0})
    .to_string();
    let (status, _, first) = bf16.post("/v1/chat/completions", &body);
    assert_eq!(status, 200, "{first}");
    let reply: Value = serde_json::from_str(&first).unwrap();
    assert!(reply["usage"]["completion_tokens"].as_u64().unwrap() >= 1, "{reply}");
    let again: Value = serde_json::from_str(&bf16.post("/v1/chat/completions", &body).2).unwrap();
    assert_eq!(again["choices"], reply["choices"]);
}

#[test]
fn a_reply_ends_at_the_generation_timeout() {
    // A timeout of 0 s: the deadline has passed when the first token is out.
    let server = Server::start(&["--generation-timeout", "0"]);
    let mut body = long_request();
    body["stream"] = json!(false);
    let (status, _, text) = server.post("/v1/chat/completions", &body.to_string());
    assert_eq!(status, 200, "{text}");
    let reply: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(reply["choices"].as_array().unwrap().len(), 8);
    assert!(reply["usage"]["completion_tokens"].as_u64().unwrap() <= 8, "{reply}");
    assert!(reply["choices"].as_array().unwrap().iter().all(|c| c["finish_reason"] == "length"), "{reply}");
    assert!(server.log().contains("timeout"), "{}", server.log());
}

#[test]
fn a_conversation_longer_than_the_context_is_refused_and_replies_stop_there() {
    let server = Server::start(&[]);
    // The d2 model: sequence_len 64, so 640 positions.
    let words: String = (0..1_500).map(|i| format!("w{i} ")).collect();
    let body = json!({"messages": [{"role": "user", "content": &words[..7_000]}]}).to_string();
    let (status, _, text) = server.post("/v1/chat/completions", &body);
    assert_eq!(status, 400, "{text}");
    let error: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (error["error"]["code"].as_str(), error["error"]["param"].as_str()),
        (Some("context_length_exceeded"), Some("messages"))
    );
    // A reply that would run past the context ends at it.
    let body =
        json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4096, "temperature": 0}).to_string();
    let reply: Value = serde_json::from_str(&server.post("/v1/chat/completions", &body).2).unwrap();
    let usage = &reply["usage"];
    assert!(usage["total_tokens"].as_u64().unwrap() <= 640, "{reply}");
}

#[test]
fn curl_streams_both_apis() {
    let server = Server::start(&[]);
    let curl = |path: &str, body: Value| -> String {
        let out = Command::new("curl")
            .args(["-sS", "-N", "--max-time", "60", "-H", "Content-Type: application/json", "-d"])
            .arg(body.to_string())
            .arg(server.url(path))
            .output()
            .expect("curl runs (Debian's curl)");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let messages = json!([{"role": "user", "content": "Hello"}]);
    let reference = curl("/chat/completions", json!({"messages": messages, "max_tokens": 8, "temperature": 0}));
    assert!(reference.starts_with("data: {") && reference.ends_with("data: {\"done\":true}\n\n"), "{reference}");
    let chunks = curl(
        "/v1/chat/completions",
        json!({"messages": messages, "max_tokens": 8, "temperature": 0,
        "stream": true, "stream_options": {"include_usage": true}}),
    );
    let data = sse_data(&chunks);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let usage: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert!(usage["usage"]["completion_tokens"].as_u64().unwrap() >= 1, "{usage}");
    let text: String = data[..data.len() - 1]
        .iter()
        .filter_map(|d| {
            serde_json::from_str::<Value>(d).unwrap()["choices"][0]["delta"]["content"].as_str().map(String::from)
        })
        .collect();
    let reference_text: String = sse_data(&reference)
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).unwrap()["token"].as_str().map(String::from))
        .collect();
    assert_eq!(text, reference_text, "both APIs give the same greedy reply");
}

#[test]
fn the_official_openai_client_works() {
    let server = Server::start(&["--api-key", "sk-nanochat-test"]);
    let out = Command::new(python())
        .arg(root().join("tests/serve/openai_client.py"))
        .args(["--url", &server.url(""), "--api-key", "sk-nanochat-test"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} ({e}): run `make test-setup`", python().display()));
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{report}\nserver log:\n{}", server.log());
    assert!(!report.contains("FAIL"), "{report}");
}

#[test]
fn the_chat_page_works_in_headless_chromium() {
    // With a key, so the page's one-time key prompt is part of what is checked.
    let server = Server::start(&["--api-key", "sk-nanochat-test"]);
    let artifacts = root().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join("serve-ui.png");
    let _ = std::fs::remove_file(&screenshot);
    let out = Command::new(python())
        .arg(root().join("tests/serve/ui_chromium.py"))
        .args(["--url", &server.url(""), "--api-key", "sk-nanochat-test", "--max-tokens", "24", "--screenshot"])
        .arg(&screenshot)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} ({e}): run `make test-setup`", python().display()));
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{report}\nserver log:\n{}", server.log());
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 1000, "no screenshot at {}", screenshot.display());
}

/// A raw connection to the server with a short read timeout, for watching it being closed.
fn raw_connection(server: &Server) -> TcpStream {
    let socket = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    socket
}

/// Whether the server has closed `socket` (EOF or reset); whatever it sent before is read and dropped.
fn is_closed(socket: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match socket.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// Seconds after `start` at which each socket was seen closed, polling until `limit` has passed
/// (None: still open then). `tick` runs every round (a slowloris client's next byte).
fn closing_times(
    sockets: &mut [TcpStream],
    start: Instant,
    limit: Duration,
    mut tick: impl FnMut(),
) -> Vec<Option<f64>> {
    let mut closed = vec![None; sockets.len()];
    while start.elapsed() < limit && closed.iter().any(Option::is_none) {
        tick();
        for (socket, at) in sockets.iter_mut().zip(closed.iter_mut()) {
            if at.is_none() && is_closed(socket) {
                *at = Some(start.elapsed().as_secs_f64());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    closed
}

/// Idle connections close at the idle limit; a header sent a byte at a time (slowloris) and an unfinished
/// 300 KB header close at the header limit, counted from their first byte.
#[test]
fn idle_slow_and_unfinished_connections_are_closed_at_their_limits() {
    let server = Server::start(&["--header-timeout", "2", "--idle-timeout", "4"]);
    let start = Instant::now();
    let mut idle: Vec<TcpStream> = (0..20).map(|_| raw_connection(&server)).collect();
    let mut heads: Vec<TcpStream> = (0..6).map(|_| raw_connection(&server)).collect();
    let mut slow_writers = Vec::new();
    for (i, socket) in heads.iter_mut().enumerate() {
        if i % 2 == 0 {
            socket.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").unwrap();
            slow_writers.push(socket.try_clone().unwrap());
        } else {
            socket.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Pad: ").unwrap();
            socket.write_all(&vec![b'a'; 300_000]).unwrap();
        }
    }
    let heads_closed = closing_times(&mut heads, start, Duration::from_secs(10), || {
        for writer in &mut slow_writers {
            let _ = writer.write_all(b"X"); // one more header byte each round, never the end of the head
        }
    });
    for (i, at) in heads_closed.iter().enumerate() {
        let at = at.unwrap_or_else(|| panic!("head {i} was never closed"));
        assert!((1.5..=5.0).contains(&at), "unfinished head {i} closed after {at:.1} s; --header-timeout 2");
    }
    let idle_closed = closing_times(&mut idle, start, Duration::from_secs(12), || {});
    for at in &idle_closed {
        let at = at.expect("an idle connection was never closed");
        assert!((3.5..=7.0).contains(&at), "idle connection closed after {at:.1} s; --idle-timeout 4");
    }
    assert_eq!(server.get("/health").0, 200, "the server still answers");
}

/// Under `ulimit -n 256`, 400 idle sockets cannot keep /health from answering once the idle limit has passed
/// (at the connection cap a new connection closes the longest-idle one).
#[test]
fn idle_sockets_past_the_open_file_limit_do_not_block_health() {
    let server = Server::start_with_open_files(&["--idle-timeout", "2"], Some(256));
    let mut idle: Vec<TcpStream> = (0..400).map(|_| raw_connection(&server)).collect();
    std::thread::sleep(Duration::from_millis(2500));
    let quick = agent_with_timeout(Duration::from_secs(1));
    let asked = Instant::now();
    let response = quick.get(server.url("/health")).call();
    let status =
        response.map(|r| r.status().as_u16()).unwrap_or_else(|e| panic!("/health: {e}; log: {}", server.log()));
    assert_eq!(status, 200);
    eprintln!("/health answered in {:.0} ms with 400 idle sockets open", asked.elapsed().as_secs_f64() * 1000.0);
    let closed = closing_times(&mut idle, Instant::now(), Duration::from_secs(8), || {});
    assert!(
        closed.iter().all(Option::is_some),
        "{} idle sockets still open",
        closed.iter().filter(|c| c.is_none()).count()
    );
}

/// SIGTERM while clients hold a half-sent head and a half-sent body: the server stops within the drain time.
#[test]
fn sigterm_with_half_sent_requests_exits_within_the_drain_time() {
    let mut server = Server::start(&["--drain-timeout", "2"]);
    let mut head = raw_connection(&server);
    head.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n").unwrap();
    let mut body = raw_connection(&server);
    body.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"mess").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let signalled = Instant::now();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    let mut status = None;
    while signalled.elapsed() < Duration::from_secs(15) && status.is_none() {
        status = server.child.try_wait().unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    let waited = signalled.elapsed().as_secs_f64();
    let status = status.unwrap_or_else(|| panic!("still running {waited:.1} s after SIGTERM; log: {}", server.log()));
    assert!(status.success(), "{status:?}; log: {}", server.log());
    assert!(waited < 5.0, "exited {waited:.1} s after SIGTERM; --drain-timeout 2");
    assert!(server.log().contains("server stopped"), "{}", server.log());
    assert!(is_closed(&mut head) && is_closed(&mut body));
}

#[test]
fn path_errors_are_json_and_an_oversized_declared_body_is_refused_before_it_is_sent() {
    let server = Server::start(&["--body-limit", "1000"]);
    let (status, body) = server.get("/v1/models/%FF");
    assert_eq!(status, 400, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    assert_eq!(error["error"]["type"], "invalid_request_error", "{error}");
    let mut socket = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    socket
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n")
        .unwrap();
    let mut status_line = String::new();
    BufReader::new(socket).read_line(&mut status_line).unwrap();
    assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line:?}");
}

/// `--api-key`: every API route wants the key (401 JSON without, 200 with); the page and /health stay open;
/// cross-origin calls are no longer allowed. Without a key CORS is open, as the reference's.
#[test]
fn an_api_key_guards_the_api_and_limits_cors() {
    let server = Server::start(&["--api-key", "sk-test"]);
    for path in ["/v1/models", "/v1/models/nanochat", "/stats"] {
        let (status, body) = server.get(path);
        assert_eq!(status, 401, "{path}: {body}");
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"]["code"], "invalid_api_key", "{body}");
    }
    assert_eq!(server.post("/v1/chat/completions", r#"{"messages": [{"role": "user", "content": "Hi"}]}"#).0, 401);
    let with_key = |key: &str| {
        let response = agent().get(server.url("/v1/models")).header("authorization", format!("Bearer {key}")).call();
        response.unwrap().status().as_u16()
    };
    assert_eq!((with_key("sk-test"), with_key("sk-tesT")), (200, 401));
    assert_eq!((server.get("/").0, server.get("/health").0), (200, 200));
    let origin = |server: &Server| {
        let response = agent().get(server.url("/health")).header("origin", "http://elsewhere.example").call().unwrap();
        response.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap().to_string())
    };
    assert_eq!(origin(&server), None);
    assert_eq!(origin(&Server::start(&[])).as_deref(), Some("*"));
    let named = Server::start(&["--api-key", "sk-test", "--cors-origin", "http://elsewhere.example"]);
    assert_eq!(origin(&named).as_deref(), Some("http://elsewhere.example"));
}
