//! The worker pool (NANOCHAT.md §9): one model replica + engine per device, each on its own thread,
//! and a bounded wait for a free one.
//!
//! A request leases a worker ([`WorkerPool::acquire`]): at once when one is free, else it waits in a
//! queue of at most `queue_limit` requests for at most `queue_timeout` (503 with Retry-After beyond
//! either). The [`Lease`] travels with the job to the worker thread and is dropped there when the
//! generation ends (finished, failed, past its deadline, or its client gone: the event channel
//! closed), which puts the worker back. A panic inside a job is caught and answered as an error; the
//! worker goes on serving.
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use tch::Device;
use tokio::sync::{mpsc as tokio_mpsc, OwnedSemaphorePermit, Semaphore};

use super::error::ApiError;
use super::request::{Role, Turn};
use crate::engine::chat_engine::{CausalModel, Engine, GenerationSettings, SamplingRng};
use crate::engine::loaded_model::{LoadedModel, ModelSpec};
use crate::engine::utf8_stream::Utf8Stream;
use crate::paths::Paths;
use crate::tokenizer::BpeEncoder;

/// What a worker is asked to do.
pub struct Job {
    pub turns: Vec<Turn>,
    pub settings: GenerationSettings,
    /// Generation stops here (finish reason `length`).
    pub deadline: Instant,
    pub events: tokio_mpsc::UnboundedSender<WorkerEvent>,
    pub lease: Lease,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// `<|assistant_end|>` or `<|bos|>`.
    Stop,
    /// max_tokens reached.
    Length,
    /// The request's time ran out.
    Timeout,
    /// The client went away.
    Cancelled,
}

impl FinishReason {
    /// OpenAI's finish_reason.
    pub fn openai(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            _ => "length",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum WorkerEvent {
    /// The prompt is encoded and generation starts.
    Started { prompt_tokens: usize, gpu: usize },
    /// New text of one completion (whole UTF-8 characters only).
    Text { row: usize, text: String },
    /// Every completion ended: per row, tokens generated and why it ended.
    Finished { rows: Vec<(usize, FinishReason)> },
    /// The request cannot be served (an error status before the stream starts, an error event after).
    Failed { error: ApiError },
}

/// The model a pool serves, as the API names it.
#[derive(Clone, Debug)]
pub struct ModelInfo {
    pub id: String,
    pub description: String,
    /// Unix seconds of the checkpoint (OpenAI's `created`).
    pub created: u64,
}

struct Slot {
    jobs: mpsc::Sender<Job>,
    device: Device,
}

struct Shared {
    slots: Vec<Slot>,
    idle: Mutex<Vec<usize>>,
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    served: AtomicU64,
    rejected: AtomicU64,
}

pub struct WorkerPool {
    shared: Arc<Shared>,
    queue_limit: usize,
    queue_timeout: Duration,
    pub model: ModelInfo,
}

/// A worker held by one request; dropping it gives the worker back.
pub struct Lease {
    shared: Arc<Shared>,
    pub worker: usize,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.shared.served.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut idle) = self.shared.idle.lock() {
            idle.push(self.worker);
        }
        // The permit is released after this, once the worker is back in the idle list.
    }
}

/// Counts a request in the queue while it waits (also when its future is dropped).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct PoolStats {
    pub total_workers: usize,
    pub available_workers: usize,
    pub busy_workers: usize,
    pub queued_requests: usize,
    pub served_requests: u64,
    pub rejected_requests: u64,
    pub workers: Vec<serde_json::Value>,
}

impl WorkerPool {
    /// Loads one replica per device, each on its own worker thread; fails with the first load error.
    pub fn start(
        paths: &Paths,
        spec: &ModelSpec,
        devices: &[Device],
        queue_limit: usize,
        queue_timeout: Duration,
    ) -> anyhow::Result<WorkerPool> {
        let mut slots = Vec::with_capacity(devices.len());
        let mut ready = Vec::with_capacity(devices.len());
        for (gpu, &device) in devices.iter().enumerate() {
            let (jobs, inbox) = mpsc::channel::<Job>();
            let (tell, loaded) = mpsc::channel::<Result<ModelInfo, String>>();
            let (paths, spec) = (paths.clone(), spec.clone());
            std::thread::Builder::new()
                .name(format!("worker-{gpu}"))
                .spawn(move || worker_main(gpu, device, &paths, &spec, inbox, tell))?;
            slots.push(Slot { jobs, device });
            ready.push(loaded);
        }
        let mut model = None;
        for loaded in ready {
            let info = loaded.recv().map_err(|_| anyhow::anyhow!("a worker thread stopped while loading"))?;
            model = Some(info.map_err(|e| anyhow::anyhow!(e))?);
        }
        let model = model.ok_or_else(|| anyhow::anyhow!("no device to serve on"))?;
        Ok(Self::over(slots, queue_limit, queue_timeout, model))
    }

    fn over(slots: Vec<Slot>, queue_limit: usize, queue_timeout: Duration, model: ModelInfo) -> WorkerPool {
        let n = slots.len();
        WorkerPool {
            shared: Arc::new(Shared {
                slots,
                idle: Mutex::new((0..n).rev().collect()),
                permits: Arc::new(Semaphore::new(n)),
                waiting: AtomicUsize::new(0),
                served: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
            }),
            queue_limit,
            queue_timeout,
            model,
        }
    }

    /// A free worker, waiting in the bounded queue if every one is busy.
    pub async fn acquire(&self) -> Result<Lease, ApiError> {
        let permit = match self.shared.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let retry = self.queue_timeout.as_secs().clamp(1, 60);
                if self.shared.waiting.fetch_add(1, Ordering::SeqCst) >= self.queue_limit {
                    self.shared.waiting.fetch_sub(1, Ordering::SeqCst);
                    self.shared.rejected.fetch_add(1, Ordering::Relaxed);
                    return Err(ApiError::busy(
                        retry,
                        format!(
                            "every worker is busy and {} requests are already waiting; retry later",
                            self.queue_limit
                        ),
                    ));
                }
                let _waiting = Waiting(&self.shared.waiting);
                match tokio::time::timeout(self.queue_timeout, self.shared.permits.clone().acquire_owned()).await {
                    Ok(Ok(permit)) => permit,
                    _ => {
                        self.shared.rejected.fetch_add(1, Ordering::Relaxed);
                        return Err(ApiError::busy(
                            retry,
                            format!("no worker became free within {} s; retry later", self.queue_timeout.as_secs()),
                        ));
                    }
                }
            }
        };
        let worker = self.shared.idle.lock().ok().and_then(|mut idle| idle.pop());
        match worker {
            Some(worker) => Ok(Lease { shared: self.shared.clone(), worker, _permit: permit }),
            None => Err(ApiError::internal("the worker pool lost track of its workers")),
        }
    }

    /// Hands a job to its leased worker.
    pub fn submit(&self, job: Job) -> Result<(), ApiError> {
        let slot = &self.shared.slots[job.lease.worker];
        slot.jobs.send(job).map_err(|_| ApiError::internal("the worker thread has stopped"))
    }

    pub fn size(&self) -> usize {
        self.shared.slots.len()
    }

    pub fn stats(&self) -> PoolStats {
        let available = self.shared.permits.available_permits();
        let total = self.size();
        PoolStats {
            total_workers: total,
            available_workers: available,
            busy_workers: total - available,
            queued_requests: self.shared.waiting.load(Ordering::SeqCst),
            served_requests: self.shared.served.load(Ordering::Relaxed),
            rejected_requests: self.shared.rejected.load(Ordering::Relaxed),
            workers: (self.shared.slots.iter().enumerate())
                .map(|(gpu, s)| serde_json::json!({"gpu_id": gpu, "device": format!("{:?}", s.device).to_lowercase()}))
                .collect(),
        }
    }
}

fn worker_main(
    gpu: usize,
    device: Device,
    paths: &Paths,
    spec: &ModelSpec,
    inbox: mpsc::Receiver<Job>,
    loaded: mpsc::Sender<Result<ModelInfo, String>>,
) {
    let model = match LoadedModel::open(paths, spec, device) {
        Ok(model) => model,
        Err(e) => {
            let _ = loaded.send(Err(format!("loading the model on {device:?}: {e}")));
            return;
        }
    };
    let engine = match Engine::new(&model.model, &model.encoder) {
        Ok(engine) => engine,
        Err(e) => {
            let _ = loaded.send(Err(format!("the tokenizer has no chat tokens: {e}")));
            return;
        }
    };
    let _ = loaded.send(Ok(model_info(&model, spec)));
    serve_jobs(&engine, gpu, inbox);
}

/// A worker's loop: each job in turn until the pool goes away.
fn serve_jobs<M: CausalModel>(engine: &Engine<'_, M>, gpu: usize, inbox: mpsc::Receiver<Job>) {
    for job in inbox {
        let events = job.events.clone();
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| run(engine, gpu, &job)));
        if outcome.is_err() {
            log::error!("worker {gpu}: a generation failed with an internal error (the worker goes on)");
            let _ = events.send(WorkerEvent::Failed { error: ApiError::internal("internal error during generation") });
        }
        // `job` (and its lease) is dropped here: the worker is free again.
    }
}

fn model_info(model: &LoadedModel, spec: &ModelSpec) -> ModelInfo {
    let phase = if spec.checkpoint_dir.is_some() { "checkpoint" } else { spec.phase.as_str() };
    let created = std::fs::metadata(&model.source.dir)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    ModelInfo {
        id: format!("nanochat-{phase}-d{}", model.model.config.n_layer),
        description: model.describe(),
        created,
    }
}

/// The prompt of §9: `<|bos|>`, each turn inside its start/end tokens, then `<|assistant_start|>`.
pub fn prompt_tokens<M: CausalModel>(engine: &Engine<'_, M>, turns: &[Turn]) -> Vec<u32> {
    let t = engine.chat_tokens();
    let encoder = engine.encoder();
    let mut ids = vec![t.bos];
    for turn in turns {
        let (start, end) = match turn.role {
            Role::User => (t.user_start, t.user_end),
            Role::Assistant => (t.assistant_start, t.assistant_end),
        };
        ids.push(start);
        encoder.encode_ordinary_into(&turn.content, &mut ids);
        ids.push(end);
    }
    ids.push(t.assistant_start);
    ids
}

/// Runs one job, streaming its text as whole characters.
fn run<M: CausalModel>(engine: &Engine<'_, M>, gpu: usize, job: &Job) {
    let prompt = prompt_tokens(engine, &job.turns);
    if let Some(context) = engine.context().filter(|&c| prompt.len() >= c) {
        let message = format!(
            "the conversation is {} tokens; this model's context is {context} (prompt and reply): send fewer or \
             shorter messages",
            prompt.len()
        );
        let mut error = ApiError::invalid(message, Some("messages"));
        error.code = Some("context_length_exceeded");
        let _ = job.events.send(WorkerEvent::Failed { error });
        return;
    }
    if job.events.send(WorkerEvent::Started { prompt_tokens: prompt.len(), gpu }).is_err() {
        return;
    }
    let t = *engine.chat_tokens();
    let encoder: &BpeEncoder = engine.encoder();
    let rows = job.settings.num_samples.max(1);
    let mut streams: Vec<Utf8Stream> = (0..rows).map(|_| Utf8Stream::new()).collect();
    let mut ends: Vec<(usize, Option<FinishReason>)> = vec![(0, None); rows];
    let mut stopped = None;
    engine.generate(&prompt, &job.settings, |column, _| {
        for (row, &token) in column.iter().enumerate() {
            let (count, end) = &mut ends[row];
            if end.is_some() {
                continue;
            }
            if token == t.assistant_end || token == t.bos {
                *end = Some(FinishReason::Stop);
                continue;
            }
            *count += 1;
            let text = streams[row].push(encoder.token_bytes(token).unwrap_or_default());
            if !text.is_empty() && job.events.send(WorkerEvent::Text { row, text }).is_err() {
                stopped = Some(FinishReason::Cancelled);
                return false;
            }
        }
        if job.events.is_closed() {
            stopped = Some(FinishReason::Cancelled);
        } else if Instant::now() >= job.deadline {
            stopped = Some(FinishReason::Timeout);
        }
        stopped.is_none()
    });
    if stopped == Some(FinishReason::Cancelled) {
        let tokens: usize = ends.iter().map(|e| e.0).sum();
        log::info!("worker {gpu}: the client left; generation stopped after {tokens} token(s)");
    }
    let mut finished = Vec::with_capacity(rows);
    for (row, (count, end)) in ends.into_iter().enumerate() {
        let rest = streams[row].finish();
        if !rest.is_empty() {
            let _ = job.events.send(WorkerEvent::Text { row, text: rest });
        }
        finished.push((count, end.or(stopped).unwrap_or(FinishReason::Length)));
    }
    let _ = job.events.send(WorkerEvent::Finished { rows: finished });
}

/// Settings of one request: its own generator (concurrent requests never share draws), its seed or a
/// fresh one.
pub fn settings(n: usize, max_tokens: usize, temperature: f64, top_k: i64, seed: Option<i64>) -> GenerationSettings {
    GenerationSettings {
        num_samples: n,
        max_tokens: Some(max_tokens),
        temperature,
        top_k: Some(top_k),
        seed: seed.unwrap_or_else(random_seed),
        rng: SamplingRng::Private,
    }
}

/// A seed from the OS-seeded hasher keys, different for every call.
pub fn random_seed() -> i64 {
    use std::hash::{BuildHasher, Hasher};
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
    (hasher.finish() >> 1) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pool of `n` workers whose job channels nobody reads: only leasing is exercised.
    fn pool(n: usize, queue_limit: usize, queue_timeout: Duration) -> (WorkerPool, Vec<mpsc::Receiver<Job>>) {
        let (slots, inboxes) = (0..n)
            .map(|_| {
                let (jobs, inbox) = mpsc::channel();
                (Slot { jobs, device: Device::Cpu }, inbox)
            })
            .unzip();
        let model = ModelInfo { id: "m".into(), description: String::new(), created: 0 };
        (WorkerPool::over(slots, queue_limit, queue_timeout, model), inboxes)
    }

    /// A model that fails inside libtorch-like code: it panics on every forward.
    struct Broken;

    impl CausalModel for Broken {
        fn logits(&self, _: &tch::Tensor, _: &mut crate::model::KvCache) -> tch::Tensor {
            panic!("simulated failure inside the model")
        }
        fn n_layer(&self) -> usize {
            1
        }
        fn device(&self) -> Device {
            Device::Cpu
        }
    }

    #[test]
    fn a_panicking_generation_is_answered_and_the_worker_goes_on() {
        let encoder =
            BpeEncoder::new((0..=255u8).map(|b| vec![b]).collect(), &crate::tokenizer::SPECIAL_TOKENS).unwrap();
        let (pool, mut inboxes) = pool(1, 1, Duration::from_secs(10));
        let inbox = inboxes.pop().unwrap();
        let engine = Engine::new(&Broken, &encoder).unwrap();
        let rt = runtime();
        std::thread::scope(|s| {
            s.spawn(|| serve_jobs(&engine, 0, inbox));
            // Two jobs in turn: the second needs the worker the first one's failure gave back.
            for _ in 0..2 {
                let lease = rt.block_on(pool.acquire()).unwrap();
                let (events, mut rx) = tokio_mpsc::unbounded_channel();
                let turns = vec![Turn { role: Role::User, content: "hi".into() }];
                let settings = settings(1, 4, 0.0, 1, Some(1));
                pool.submit(Job { turns, settings, deadline: Instant::now(), events, lease }).unwrap();
                let started = rx.blocking_recv().unwrap();
                assert!(matches!(started, WorkerEvent::Started { prompt_tokens: 6, gpu: 0 }), "{started:?}");
                let failed = rx.blocking_recv().unwrap();
                assert!(matches!(failed, WorkerEvent::Failed { .. }), "{failed:?}");
            }
            drop(pool);
        });
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    #[test]
    fn busy_workers_queue_then_refuse() {
        runtime().block_on(async {
            let (pool, _inboxes) = pool(2, 1, Duration::from_secs(30));
            let a = pool.acquire().await.unwrap();
            let b = pool.acquire().await.unwrap();
            assert_ne!(a.worker, b.worker);
            assert_eq!(pool.stats().busy_workers, 2);
            // The third waits in the queue; the fourth finds the queue full: 503 with Retry-After.
            let waiting = pool.acquire();
            tokio::pin!(waiting);
            assert!(tokio::time::timeout(Duration::from_millis(20), &mut waiting).await.is_err());
            assert_eq!(pool.stats().queued_requests, 1);
            let refused = pool.acquire().await.err().unwrap();
            assert_eq!(refused.status, axum::http::StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(refused.retry_after, Some(30));
            // Giving a worker back hands it to the waiting request.
            let freed = a.worker;
            drop(a);
            let c = waiting.await.unwrap();
            assert_eq!(c.worker, freed);
            let stats = pool.stats();
            assert_eq!((stats.queued_requests, stats.served_requests, stats.rejected_requests), (0, 1, 1));
            drop((b, c));
            assert_eq!(pool.stats().available_workers, 2);
        });
    }

    #[test]
    fn the_queue_wait_is_bounded_and_a_dropped_waiter_leaves_the_queue() {
        runtime().block_on(async {
            let (pool, _inboxes) = pool(1, 4, Duration::from_millis(50));
            let held = pool.acquire().await.unwrap();
            let timed_out = pool.acquire().await.err().unwrap();
            assert_eq!(timed_out.status, axum::http::StatusCode::SERVICE_UNAVAILABLE);
            assert!(timed_out.message.contains("no worker became free"), "{}", timed_out.message);
            // A client that leaves while queued no longer counts.
            let gone = tokio::time::timeout(Duration::from_millis(10), pool.acquire()).await;
            assert!(gone.is_err());
            assert_eq!(pool.stats().queued_requests, 0);
            drop(held);
            assert!(pool.acquire().await.is_ok());
        });
    }
}
