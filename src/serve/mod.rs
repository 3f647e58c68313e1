//! `nanochat serve` (NANOCHAT.md §9): the chat page and two chat APIs over a pool of model workers.
//!
//! - `GET /` our chat page, `GET /logo.svg`;
//! - `POST /chat/completions`: the reference's API, an SSE stream of `{"token", "gpu"}` then `{"done": true}`;
//! - `POST /v1/chat/completions`, `GET /v1/models`: OpenAI's chat API, streaming or not;
//! - `GET /health`, `GET /stats`.
//!
//! Requests are parsed and checked in `request`, generated in the batch of a worker of `workers`
//! (continuous batching: sequences join and leave the batch between token steps); every response
//! that is not a stream is JSON, every error the JSON of `error`. One log line per request, written
//! when its response (a stream included) ends. `access` guards the API (key, CORS, declared body size),
//! `connections` the sockets (time limits, the connection cap, the drain on shutdown).
pub mod access;
pub mod connections;
pub mod error;
pub mod request;
pub mod workers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use self::error::ApiError;
use self::request::{Api, ChatRequest, Defaults};
use self::workers::{FinishReason, Job, WorkerEvent, WorkerPool};
use crate::engine::loaded_model::ModelSpec;
use crate::paths::Paths;

const PAGE: &str = include_str!("ui.html");
const LOGO: &str = include_str!("logo.svg");

/// Everything `nanochat serve` is told.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub host: String,
    /// 0: any free port (the address is printed).
    pub port: u16,
    pub model: ModelSpec,
    /// auto, bfloat16 or float32 (see `Precision::resolve`), for every device.
    pub dtype: String,
    pub devices: Vec<tch::Device>,
    pub defaults: Defaults,
    /// Continuous batching on each replica: KV cache, batch size, prefill chunk.
    pub batch: workers::BatchConfig,
    /// Requests allowed to wait when every batch is full (more: 503).
    pub queue_limit: usize,
    /// Longest wait for a seat in a batch, and then for KV memory.
    pub queue_timeout: Duration,
    /// Longest generation; the reply ends there (finish_reason "length").
    pub generation_timeout: Duration,
    /// Longest time to receive a request's body (408 beyond).
    pub read_timeout: Duration,
    /// Largest request body in bytes.
    pub body_limit: usize,
    /// Header, idle and drain time limits and the connection cap.
    pub connections: connections::ConnectionLimits,
    /// The key every API request must carry (None: open, as the reference).
    pub api_key: Option<String>,
    /// Origins allowed by CORS (empty: any without a key, none with one).
    pub cors_origins: Vec<String>,
}

struct AppState {
    pool: WorkerPool,
    config: ServeConfig,
}

type Shared = Arc<AppState>;

/// Why `nanochat serve` could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Dtype(#[from] crate::model::precision::UnknownDtype),
    #[error("loading the model on {device:?}: {source}")]
    Load { device: tch::Device, source: crate::engine::loaded_model::LoadError },
    #[error("continuous batching does not implement this model's {0} yet (`nanochat chat` runs it)")]
    Unsupported(String),
    #[error(transparent)]
    KvCache(#[from] crate::engine::kv_arena::KvError),
    #[error("the tokenizer has no chat tokens: {0}")]
    ChatTokens(#[from] crate::tokenizer::TokenizerError),
    #[error("a worker thread stopped while loading")]
    WorkerStopped,
    #[error("no device to serve on")]
    NoDevice,
    #[error("cannot listen on {host}:{port}: {source} (try another --port)")]
    Listen { host: String, port: u16, source: std::io::Error },
    #[error("--cors-origin {0:?} is not a valid origin")]
    CorsOrigin(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Loads the workers, binds, and serves until Ctrl-C / SIGTERM.
pub fn run(paths: &Paths, config: ServeConfig) -> Result<(), ServeError> {
    let pool = WorkerPool::start(
        paths,
        &config.model,
        &config.dtype,
        &config.devices,
        config.batch,
        config.queue_limit,
        config.queue_timeout,
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().worker_threads(2).build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind((config.host.as_str(), config.port))
            .await
            .map_err(|source| ServeError::Listen { host: config.host.clone(), port: config.port, source })?;
        let address = listener.local_addr()?;
        let model = pool.model.clone();
        let workers = pool.size();
        let limits = config.connections;
        let app = router(Arc::new(AppState { pool, config }))?;
        // The one line a script waits for (tests read the port from it).
        println!("nanochat serve: listening on http://{address} ({} on {workers} worker(s))", model.id);
        log::info!("model: {}", model.description);
        connections::serve(listener, app, limits, shutdown_signal()).await;
        log::info!("server stopped");
        Ok::<_, ServeError>(())
    })?;
    // Generations still running on the workers end with the process.
    runtime.shutdown_background();
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => return ctrl_c.await.unwrap_or(()),
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await.unwrap_or(());
}

fn router(state: Shared) -> Result<Router, ServeError> {
    let mut api = Router::new()
        .route("/stats", get(stats))
        .route("/chat/completions", post(reference_completions))
        .route("/v1/chat/completions", post(openai_completions))
        .route("/v1/models", get(models))
        .route("/v1/models/{id}", get(model));
    if let Some(key) = &state.config.api_key {
        let key = access::ApiKey(key.clone());
        api = api.route_layer(axum::middleware::from_fn_with_state(key, access::require_key));
    }
    let cors = access::cors(&state.config.cors_origins, state.config.api_key.is_some())?;
    let body_limit = state.config.body_limit;
    Ok(Router::new()
        .route("/", get(page))
        .route("/logo.svg", get(logo))
        .route("/health", get(health))
        .merge(api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(body_limit, access::refuse_oversized))
        .layer(cors)
        .layer(axum::middleware::from_fn(log_request))
        .with_state(state))
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

async fn logo() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "image/svg+xml")], LOGO)
}

async fn not_found(request: Request) -> ApiError {
    ApiError::not_found(format!("no endpoint {} {}", request.method(), request.uri().path()), None, "not_found")
}

async fn method_not_allowed(request: Request) -> ApiError {
    let mut e = ApiError::not_found(
        format!("{} is not allowed on {}", request.method(), request.uri().path()),
        None,
        "method_not_allowed",
    );
    e.status = axum::http::StatusCode::METHOD_NOT_ALLOWED;
    e
}

async fn health(State(state): State<Shared>) -> Json<serde_json::Value> {
    let stats = state.pool.stats();
    Json(serde_json::json!({
        "status": "ok",
        "ready": true,
        "num_gpus": stats.total_workers,
        "available_workers": stats.available_workers,
    }))
}

async fn stats(State(state): State<Shared>) -> Json<workers::PoolStats> {
    Json(state.pool.stats())
}

fn model_object(model: &workers::ModelInfo) -> serde_json::Value {
    serde_json::json!({"id": model.id, "object": "model", "created": model.created, "owned_by": "nanochat"})
}

async fn models(State(state): State<Shared>) -> Json<serde_json::Value> {
    Json(serde_json::json!({"object": "list", "data": [model_object(&state.pool.model)]}))
}

async fn model(
    State(state): State<Shared>,
    id: Result<axum::extract::Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let axum::extract::Path(id) = id.map_err(|e| ApiError::invalid(format!("bad model id in the path: {e}"), None))?;
    check_model(&state, &id)?;
    Ok(Json(model_object(&state.pool.model)))
}

/// The served model answers to its id and to "nanochat".
fn check_model(state: &AppState, asked: &str) -> Result<(), ApiError> {
    let served = &state.pool.model.id;
    if asked == served || asked == "nanochat" {
        return Ok(());
    }
    Err(ApiError::not_found(
        format!("the model `{asked}` does not exist; this server serves `{served}` (GET /v1/models)"),
        Some("model"),
        "model_not_found",
    ))
}

/// Reads and checks the body, leases seats in a worker's batch and starts the generation; returns once
/// the worker has admitted it into the batch (so a failure before any text is an error status, not a
/// broken stream).
async fn start(
    state: &AppState,
    body: Body,
    api: Api,
) -> Result<(ChatRequest, usize, usize, UnboundedReceiver<WorkerEvent>), ApiError> {
    let body = read_body(body, state.config.body_limit, state.config.read_timeout).await?;
    let mut request = request::parse(&body, api, &state.config.defaults)?;
    if let Some(asked) = &request.model {
        check_model(state, asked)?;
    }
    let lease = state.pool.acquire(request.n).await?;
    let (events, mut received) = unbounded_channel();
    let settings = workers::settings(request.n, request.max_tokens, request.temperature, request.top_k, request.seed);
    let deadline = Instant::now() + state.config.generation_timeout;
    let admit_by = Instant::now() + state.config.queue_timeout;
    let turns = std::mem::take(&mut request.turns);
    state.pool.submit(Job { turns, settings, deadline, admit_by, events, lease })?;
    match received.recv().await {
        Some(WorkerEvent::Started { prompt_tokens, gpu }) => Ok((request, prompt_tokens, gpu, received)),
        Some(WorkerEvent::Failed { error }) => Err(error),
        _ => Err(ApiError::internal("the worker stopped before generating")),
    }
}

/// The whole body, at most `limit` bytes (413) within `timeout` (408).
async fn read_body(body: Body, limit: usize, timeout: Duration) -> Result<Bytes, ApiError> {
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.downcast_ref::<http_body_util::LengthLimitError>().is_some());
            Err(if too_large {
                ApiError::too_large(limit)
            } else {
                ApiError::invalid(format!("cannot read the request body: {e}"), None)
            })
        }
        Err(_) => Err(ApiError::timeout(format!("the request body did not arrive within {} s", timeout.as_secs()))),
    }
}

/// Tokens and finish reason of a generation, for the request's log line.
#[derive(Clone, Default)]
struct GenerationLog(Arc<std::sync::Mutex<Option<String>>>);

impl GenerationLog {
    fn set(&self, line: String) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(line);
        }
    }
}

fn summary(prompt_tokens: usize, rows: &[(usize, FinishReason)], gpu: usize) -> String {
    let completion: usize = rows.iter().map(|r| r.0).sum();
    let reasons: Vec<String> = rows.iter().map(|r| format!("{:?}", r.1).to_lowercase()).collect();
    format!("prompt {prompt_tokens} tok, completion {completion} tok, {}, worker {gpu}", reasons.join("/"))
}

/// `POST /chat/completions`, the reference's stream.
async fn reference_completions(State(state): State<Shared>, body: Body) -> Response {
    let (_, prompt_tokens, gpu, mut events) = match start(&state, body, Api::Reference).await {
        Ok(started) => started,
        Err(e) => return e.into_response(),
    };
    let log = GenerationLog::default();
    let log_line = log.clone();
    let stream = async_stream(move |emit| async move {
        while let Some(event) = events.recv().await {
            match event {
                WorkerEvent::Text { text, .. } => emit.send(serde_json::json!({"token": text, "gpu": gpu}).to_string()),
                WorkerEvent::Finished { rows } => {
                    log_line.set(summary(prompt_tokens, &rows, gpu));
                    break;
                }
                WorkerEvent::Failed { error } => {
                    emit.send(serde_json::json!({"error": error.message}).to_string());
                    break;
                }
                WorkerEvent::Started { .. } => {}
            }
        }
        emit.send(serde_json::json!({"done": true}).to_string());
    });
    sse(stream, log)
}

/// `POST /v1/chat/completions`: chunks when streaming, else one completion object.
async fn openai_completions(State(state): State<Shared>, body: Body) -> Response {
    let (request, prompt_tokens, gpu, mut events) = match start(&state, body, Api::OpenAi).await {
        Ok(started) => started,
        Err(e) => return e.into_response(),
    };
    let id = format!("chatcmpl-{:016x}", workers::random_seed());
    let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let model = state.pool.model.id.clone();
    let log = GenerationLog::default();
    let usage = move |rows: &[(usize, FinishReason)]| {
        let completion: usize = rows.iter().map(|r| r.0).sum();
        serde_json::json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion})
    };
    if !request.stream {
        let mut texts = vec![String::new(); request.n];
        while let Some(event) = events.recv().await {
            match event {
                WorkerEvent::Text { row, text } => texts[row].push_str(&text),
                WorkerEvent::Finished { rows } => {
                    let choices: Vec<_> = (rows.iter().zip(texts).enumerate())
                        .map(|(i, (row, text))| {
                            serde_json::json!({"index": i, "message": {"role": "assistant", "content": text},
                                "finish_reason": row.1.openai(), "logprobs": null})
                        })
                        .collect();
                    log.set(summary(prompt_tokens, &rows, gpu));
                    let body = serde_json::json!({"id": id, "object": "chat.completion", "created": created,
                        "model": model, "choices": choices, "usage": usage(&rows)});
                    let mut response = Json(body).into_response();
                    response.extensions_mut().insert(log);
                    return response;
                }
                WorkerEvent::Failed { error } => return error.into_response(),
                WorkerEvent::Started { .. } => {}
            }
        }
        return ApiError::internal("the worker stopped before finishing").into_response();
    }
    let log_line = log.clone();
    let include_usage = request.include_usage;
    let n = request.n;
    let stream = async_stream(move |emit| async move {
        let chunk = |choices: serde_json::Value| {
            let mut c = serde_json::json!({"id": id, "object": "chat.completion.chunk", "created": created,
                "model": model, "choices": choices});
            if include_usage {
                c["usage"] = serde_json::Value::Null;
            }
            c
        };
        for i in 0..n {
            let delta = serde_json::json!([{"index": i, "delta": {"role": "assistant", "content": ""},
                "finish_reason": null, "logprobs": null}]);
            emit.send(chunk(delta).to_string());
        }
        while let Some(event) = events.recv().await {
            match event {
                WorkerEvent::Text { row, text } => {
                    let delta = serde_json::json!([{"index": row, "delta": {"content": text},
                        "finish_reason": null, "logprobs": null}]);
                    emit.send(chunk(delta).to_string());
                }
                WorkerEvent::Finished { rows } => {
                    for (i, row) in rows.iter().enumerate() {
                        let end = serde_json::json!([{"index": i, "delta": {}, "finish_reason": row.1.openai(),
                            "logprobs": null}]);
                        emit.send(chunk(end).to_string());
                    }
                    if include_usage {
                        let mut last = chunk(serde_json::json!([]));
                        last["usage"] = usage(&rows);
                        emit.send(last.to_string());
                    }
                    log_line.set(summary(prompt_tokens, &rows, gpu));
                    break;
                }
                WorkerEvent::Failed { error } => {
                    emit.send(serde_json::json!({"error": error.body()["error"]}).to_string());
                    break;
                }
                WorkerEvent::Started { .. } => {}
            }
        }
        emit.send("[DONE]".to_string());
    });
    sse(stream, log)
}

/// Where an [`async_stream`] body puts its events.
struct Emitter(tokio::sync::mpsc::UnboundedSender<String>);

impl Emitter {
    fn send(&self, data: String) {
        let _ = self.0.send(data);
    }
}

/// A stream of SSE data lines produced by `body`; dropping the stream (client gone) drops `body`,
/// and with it the worker's event receiver, which stops the generation.
fn async_stream<F, Fut>(body: F) -> impl Stream<Item = String> + Send
where
    F: FnOnce(Emitter) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = unbounded_channel();
    let producer = body(Emitter(tx));
    let task = tokio::spawn(producer);
    let abort = AbortOnDrop(task.abort_handle());
    futures_util::stream::unfold((rx, abort), |(mut rx, abort)| async move {
        rx.recv().await.map(|data| (data, (rx, abort)))
    })
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn sse(stream: impl Stream<Item = String> + Send + 'static, log: GenerationLog) -> Response {
    let events = stream.map(|data| Ok::<_, std::convert::Infallible>(Event::default().data(data)));
    let mut response = Sse::new(events).keep_alive(KeepAlive::default()).into_response();
    response.extensions_mut().insert(log);
    response
}

/// One log line per request, when its response body ends, or when the client leaves before that.
async fn log_request(request: Request, next: Next) -> Response {
    let client = request
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map_or_else(|| "-".to_string(), |c| c.0.ip().to_string());
    let mut line = RequestLine {
        began: Instant::now(),
        text: format!("{client} {} {}", request.method(), request.uri().path()),
        status: None,
        generation: None,
    };
    let response = next.run(request).await;
    line.status = Some(response.status().as_u16());
    line.generation = response.extensions().get::<GenerationLog>().cloned();
    connections::hold_until_body_ends(response, line)
}

/// Written when dropped: with the response's body, or with the request's future if the client
/// left before the response began.
struct RequestLine {
    began: Instant,
    text: String,
    status: Option<u16>,
    generation: Option<GenerationLog>,
}

impl Drop for RequestLine {
    fn drop(&mut self) {
        let elapsed = self.began.elapsed().as_secs_f64() * 1000.0;
        let Some(status) = self.status else {
            log::info!("{} - {elapsed:.0} ms (the client left before the response)", self.text);
            return;
        };
        let generation = self.generation.as_ref().map(|g| {
            g.0.lock().ok().and_then(|s| s.clone()).unwrap_or_else(|| "the client left during the stream".into())
        });
        match generation {
            Some(g) => log::info!("{} {status} {elapsed:.0} ms ({g})", self.text),
            None => log::info!("{} {status} {elapsed:.0} ms", self.text),
        }
    }
}
