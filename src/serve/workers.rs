//! The worker pool (NANOCHAT.md §9, with continuous batching: DESIGN.md "the server schedules per
//! token"): one model replica per device, each on its own thread running a [`Scheduler`] loop that
//! decodes a batch of sequences one token step at a time.
//!
//! A request leases seats ([`WorkerPool::acquire`]), one per completion (`n`), on the replica with the
//! fewest taken: at once when a replica has room for its batch (`--max-batch` sequences each), else it
//! waits in a queue of at most `queue_limit` requests for at most `queue_timeout` (503 with
//! Retry-After beyond either). The [`Lease`] travels with the job to the replica's thread, which
//! encodes the prompt and refuses what can never run there (past the model's context, or more KV than
//! its whole cache: 400 naming the limit). The job then waits, first in first out, until the KV cache
//! has a run of blocks for each completion (again at most `queue_timeout`, then 503), joins the batch
//! at the next step, and streams its text. The lease is dropped when its last completion ends
//! (finished, past its deadline, or its client gone: the event channel closed, seen before the next
//! step, which frees its KV at once). A panic inside a step is caught: that step's sequences are
//! answered with an error and the replica goes on serving.
use std::cell::RefCell;
use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use tch::Device;
use tokio::sync::{mpsc as tokio_mpsc, OwnedSemaphorePermit, Semaphore};

use super::error::ApiError;
use super::request::{Role, Turn};
use super::ServeError;
use crate::chat::ChatTokens;
use crate::engine::chat_engine::{CausalModel, Engine, GenerationSettings, SamplingRng};
use crate::engine::kv_arena::{KvArena, BLOCK_TOKENS};
use crate::engine::loaded_model::{LoadedModel, ModelSpec};
use crate::engine::scheduler::{
    BatchLimits, Finish, NewSequence, PackedModel, Scheduler, SequenceSettings, SequenceSink,
};
use crate::engine::utf8_stream::Utf8Stream;
use crate::model::Precision;
use crate::paths::Paths;
use crate::tokenizer::BpeEncoder;

/// What a worker is asked to do.
pub struct Job {
    pub turns: Vec<Turn>,
    pub settings: GenerationSettings,
    /// Generation stops here (finish reason `length`).
    pub deadline: Instant,
    /// Waiting for KV memory ends here (503).
    pub admit_by: Instant,
    pub events: tokio_mpsc::UnboundedSender<WorkerEvent>,
    pub lease: Lease,
}

/// How each replica batches: `nanochat serve --kv-cache-mb --max-batch --prefill-chunk`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchConfig {
    /// The KV cache of each replica, allocated once, in MiB.
    pub kv_cache_mb: usize,
    /// Sequences decoded together on a replica (completions, so a request with n = 4 counts 4).
    pub max_batch: usize,
    /// Prompt tokens prefilled per step on a replica, over all sequences.
    pub prefill_chunk: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig { kv_cache_mb: 1024, max_batch: 64, prefill_chunk: 256 }
    }
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
    status: Arc<WorkerStatus>,
}

/// What a replica's loop publishes after every step, for /stats.
#[derive(Default)]
struct WorkerStatus {
    running: AtomicUsize,
    /// Jobs waiting for KV memory.
    waiting: AtomicUsize,
    kv_blocks_in_use: AtomicUsize,
    kv_blocks_total: AtomicUsize,
    generated: AtomicU64,
    /// f64 bits: tokens emitted per second over the last few seconds.
    tokens_per_second: AtomicU64,
}

struct Shared {
    slots: Vec<Slot>,
    /// Seats leased on each replica.
    leased: Mutex<Vec<usize>>,
    max_batch: usize,
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

/// Seats on one replica held by one request; dropping it gives them back.
pub struct Lease {
    shared: Arc<Shared>,
    pub worker: usize,
    seats: usize,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.shared.served.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut leased) = self.shared.leased.lock() {
            leased[self.worker] -= self.seats;
        }
        // The permits are released after this, once the seats are free again.
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
    /// Replicas with a free seat in their batch.
    pub available_workers: usize,
    /// Replicas running at least one request.
    pub busy_workers: usize,
    /// Requests waiting for a seat or for KV memory.
    pub queued_requests: usize,
    pub served_requests: u64,
    pub rejected_requests: u64,
    /// Sequences in the batches now, over all replicas.
    pub running_sequences: usize,
    pub max_batch: usize,
    pub kv_blocks_in_use: usize,
    pub kv_blocks_total: usize,
    pub kv_block_tokens: usize,
    pub generated_tokens: u64,
    /// Tokens emitted per second over the last few seconds, over all replicas.
    pub tokens_per_second: f64,
    pub workers: Vec<serde_json::Value>,
}

impl WorkerPool {
    /// Loads one replica per device, each on its own worker thread; fails with the first load error.
    pub fn start(
        paths: &Paths,
        spec: &ModelSpec,
        dtype: &str,
        devices: &[Device],
        batch: BatchConfig,
        queue_limit: usize,
        queue_timeout: Duration,
    ) -> Result<WorkerPool, ServeError> {
        let mut slots = Vec::with_capacity(devices.len());
        let mut ready = Vec::with_capacity(devices.len());
        for (gpu, &device) in devices.iter().enumerate() {
            let (jobs, inbox) = mpsc::channel::<Job>();
            let (tell, loaded) = mpsc::channel::<Result<ModelInfo, ServeError>>();
            let (paths, spec) = (paths.clone(), spec.clone());
            let precision = Precision::resolve(dtype, device)?;
            let status = Arc::new(WorkerStatus::default());
            let worker = Worker { gpu, batch, queue_timeout, status: status.clone() };
            std::thread::Builder::new()
                .name(format!("worker-{gpu}"))
                .spawn(move || worker_main(worker, device, precision, &paths, &spec, inbox, tell))?;
            slots.push(Slot { jobs, device, status });
            ready.push(loaded);
        }
        let mut model = None;
        for loaded in ready {
            model = Some(loaded.recv().map_err(|_| ServeError::WorkerStopped)??);
        }
        let model = model.ok_or(ServeError::NoDevice)?;
        Ok(Self::over(slots, batch.max_batch, queue_limit, queue_timeout, model))
    }

    fn over(
        slots: Vec<Slot>,
        max_batch: usize,
        queue_limit: usize,
        queue_timeout: Duration,
        model: ModelInfo,
    ) -> WorkerPool {
        let n = slots.len();
        WorkerPool {
            shared: Arc::new(Shared {
                slots,
                leased: Mutex::new(vec![0; n]),
                max_batch,
                permits: Arc::new(Semaphore::new(n * max_batch)),
                waiting: AtomicUsize::new(0),
                served: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
            }),
            queue_limit,
            queue_timeout,
            model,
        }
    }

    /// `seats` seats (one per completion) on the replica with the fewest taken, waiting in the bounded
    /// queue while every batch is full.
    pub async fn acquire(&self, seats: usize) -> Result<Lease, ApiError> {
        let max_batch = self.shared.max_batch;
        if seats > max_batch {
            let message =
                format!("n = {seats} completions do not fit in this server's batch of {max_batch} (--max-batch)");
            return Err(ApiError::invalid(message, Some("n")));
        }
        let permit = match self.shared.permits.clone().try_acquire_many_owned(seats as u32) {
            Ok(permit) => permit,
            Err(_) => {
                let retry = self.queue_timeout.as_secs().clamp(1, 60);
                if self.shared.waiting.fetch_add(1, Ordering::SeqCst) >= self.queue_limit {
                    self.shared.waiting.fetch_sub(1, Ordering::SeqCst);
                    self.shared.rejected.fetch_add(1, Ordering::Relaxed);
                    return Err(ApiError::busy(
                        retry,
                        format!(
                            "every worker's batch is full and {} requests are already waiting; retry later",
                            self.queue_limit
                        ),
                    ));
                }
                let _waiting = Waiting(&self.shared.waiting);
                let wanted = self.shared.permits.clone().acquire_many_owned(seats as u32);
                match tokio::time::timeout(self.queue_timeout, wanted).await {
                    Ok(Ok(permit)) => permit,
                    _ => {
                        self.shared.rejected.fetch_add(1, Ordering::Relaxed);
                        return Err(ApiError::busy(
                            retry,
                            format!("no worker had room within {} s; retry later", self.queue_timeout.as_secs()),
                        ));
                    }
                }
            }
        };
        let worker = self.shared.leased.lock().ok().and_then(|mut leased| {
            let worker = (0..leased.len()).min_by_key(|&w| leased[w])?;
            leased[worker] += seats;
            Some(worker)
        });
        match worker {
            Some(worker) => Ok(Lease { shared: self.shared.clone(), worker, seats, _permit: permit }),
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
        let total = self.size();
        let leased = self.shared.leased.lock().map(|l| l.clone()).unwrap_or_default();
        let statuses = || self.shared.slots.iter().map(|s| &*s.status);
        let sum = |f: fn(&WorkerStatus) -> usize| statuses().map(f).sum::<usize>();
        PoolStats {
            total_workers: total,
            available_workers: leased.iter().filter(|&&l| l < self.shared.max_batch).count(),
            busy_workers: leased.iter().filter(|&&l| l > 0).count(),
            queued_requests: self.shared.waiting.load(Ordering::SeqCst) + sum(|s| s.waiting.load(Ordering::Relaxed)),
            served_requests: self.shared.served.load(Ordering::Relaxed),
            rejected_requests: self.shared.rejected.load(Ordering::Relaxed),
            running_sequences: sum(|s| s.running.load(Ordering::Relaxed)),
            max_batch: self.shared.max_batch,
            kv_blocks_in_use: sum(|s| s.kv_blocks_in_use.load(Ordering::Relaxed)),
            kv_blocks_total: sum(|s| s.kv_blocks_total.load(Ordering::Relaxed)),
            kv_block_tokens: BLOCK_TOKENS,
            generated_tokens: statuses().map(|s| s.generated.load(Ordering::Relaxed)).sum(),
            tokens_per_second: statuses().map(|s| f64::from_bits(s.tokens_per_second.load(Ordering::Relaxed))).sum(),
            workers: (self.shared.slots.iter().enumerate())
                .map(|(gpu, s)| serde_json::json!({"gpu_id": gpu, "device": format!("{:?}", s.device).to_lowercase()}))
                .collect(),
        }
    }
}

/// A replica's loop settings.
struct Worker {
    gpu: usize,
    batch: BatchConfig,
    queue_timeout: Duration,
    status: Arc<WorkerStatus>,
}

fn worker_main(
    worker: Worker,
    device: Device,
    precision: Precision,
    paths: &Paths,
    spec: &ModelSpec,
    inbox: mpsc::Receiver<Job>,
    loaded: mpsc::Sender<Result<ModelInfo, ServeError>>,
) {
    let model = match LoadedModel::open_with(paths, spec, device, precision) {
        Ok(model) => model,
        Err(e) => {
            let _ = loaded.send(Err(ServeError::Load { device, source: e }));
            return;
        }
    };
    let unsupported = model.model.options_without_packed_decoding();
    if !unsupported.is_empty() {
        let _ = loaded.send(Err(ServeError::Unsupported(unsupported.join(", "))));
        return;
    }
    let arena = match KvArena::new(PackedModel::kv_shape(&model.model), worker.batch.kv_cache_mb) {
        Ok(arena) => arena,
        Err(e) => {
            let _ = loaded.send(Err(e.into()));
            return;
        }
    };
    let limits = BatchLimits { max_batch: worker.batch.max_batch, prefill_chunk: worker.batch.prefill_chunk };
    let scheduler = match Scheduler::new(&model.model, &model.encoder, arena, limits) {
        Ok(scheduler) => scheduler,
        Err(e) => {
            let _ = loaded.send(Err(e.into()));
            return;
        }
    };
    log::info!(
        "worker {}: {precision} on {device:?}, KV cache {} MiB = {} positions in blocks of {BLOCK_TOKENS}, batches \
         of up to {} sequences",
        worker.gpu,
        worker.batch.kv_cache_mb,
        scheduler.arena().capacity_tokens(),
        scheduler.limits().max_batch
    );
    let _ = loaded.send(Ok(model_info(&model, spec)));
    worker.serve(scheduler, inbox);
}

/// A job whose prompt is encoded, waiting for KV memory.
struct WaitingJob {
    job: Job,
    prompt: Vec<u32>,
}

impl Worker {
    /// The replica's loop until the pool goes away: take new jobs, admit those that fit, run one step.
    fn serve(&self, mut scheduler: Scheduler<'_>, inbox: mpsc::Receiver<Job>) {
        let mut waiting: VecDeque<WaitingJob> = VecDeque::new();
        let mut recent: VecDeque<(Instant, usize)> = VecDeque::new();
        loop {
            if scheduler.running() == 0 && waiting.is_empty() {
                self.publish(&scheduler, 0, &mut recent, 0);
                match inbox.recv() {
                    Ok(job) => waiting.extend(self.accept(&scheduler, job)),
                    Err(_) => return,
                }
            }
            while let Ok(job) = inbox.try_recv() {
                waiting.extend(self.accept(&scheduler, job));
            }
            self.admit(&mut scheduler, &mut waiting);
            let emitted = match std::panic::catch_unwind(AssertUnwindSafe(|| scheduler.step())) {
                Ok(emitted) => emitted,
                Err(_) => {
                    log::error!(
                        "worker {}: a step failed with an internal error (its sequences end, the worker goes on)",
                        self.gpu
                    );
                    scheduler.fail_all();
                    0
                }
            };
            self.publish(&scheduler, waiting.len(), &mut recent, emitted);
        }
    }

    /// Encodes the job's prompt and refuses what can never run here; None when answered. A panic is
    /// caught: the job is dropped, which its handler answers as an internal error.
    fn accept(&self, scheduler: &Scheduler<'_>, job: Job) -> Option<WaitingJob> {
        let accepted = std::panic::catch_unwind(AssertUnwindSafe(|| self.check(scheduler, job)));
        accepted.unwrap_or_else(|_| {
            log::error!("worker {}: encoding a prompt failed with an internal error (the worker goes on)", self.gpu);
            None
        })
    }

    fn check(&self, scheduler: &Scheduler<'_>, job: Job) -> Option<WaitingJob> {
        let prompt = chat_prompt(scheduler.chat_tokens(), scheduler.encoder(), &job.turns);
        if let Some(context) = scheduler.context().filter(|&c| prompt.len() >= c) {
            let message = format!(
                "the conversation is {} tokens; this model's context is {context} (prompt and reply): send fewer or \
                 shorter messages",
                prompt.len()
            );
            let mut error = ApiError::invalid(message, Some("messages"));
            error.code = Some("context_length_exceeded");
            let _ = job.events.send(WorkerEvent::Failed { error });
            return None;
        }
        let rows = job.settings.num_samples.max(1);
        let max_tokens = job.settings.max_tokens.unwrap_or(usize::MAX);
        let needed = rows * scheduler.reservation(prompt.len(), max_tokens);
        let capacity = scheduler.arena().capacity_tokens();
        if needed > capacity {
            let message = format!(
                "this request needs {needed} KV cache positions ({rows} × (prompt {} + max_tokens {max_tokens})) but \
                 the server's whole KV cache holds {capacity} ({} MiB, --kv-cache-mb): ask for fewer max_tokens, \
                 a smaller n or a shorter conversation",
                prompt.len(),
                self.batch.kv_cache_mb
            );
            let mut error = ApiError::invalid(message, Some("max_tokens"));
            error.code = Some("kv_cache_exceeded");
            let _ = job.events.send(WorkerEvent::Failed { error });
            return None;
        }
        Some(WaitingJob { job, prompt })
    }

    /// Admits waiting jobs in arrival order while they fit; drops those whose client left and answers
    /// 503 to those that waited too long.
    fn admit<'a>(&self, scheduler: &mut Scheduler<'a>, waiting: &mut VecDeque<WaitingJob>) {
        let now = Instant::now();
        waiting.retain(|w| {
            if w.job.events.is_closed() {
                return false;
            }
            if now >= w.job.admit_by {
                let retry = self.queue_timeout.as_secs().clamp(1, 60);
                let message =
                    format!("no KV memory became free within {} s; retry later", self.queue_timeout.as_secs());
                let _ = w.job.events.send(WorkerEvent::Failed { error: ApiError::busy(retry, message) });
                return false;
            }
            true
        });
        while let Some(head) = waiting.front() {
            let rows = head.job.settings.num_samples.max(1);
            let max_tokens = head.job.settings.max_tokens.unwrap_or(usize::MAX);
            if !scheduler.fits(rows, head.prompt.len(), max_tokens) {
                return;
            }
            let Some(WaitingJob { job, prompt }) = waiting.pop_front() else { return };
            if job.events.send(WorkerEvent::Started { prompt_tokens: prompt.len(), gpu: self.gpu }).is_err() {
                continue;
            }
            let s = job.settings;
            let request = Rc::new(RefCell::new(RequestRows {
                ends: vec![None; rows],
                events: job.events,
                lease: Some(job.lease),
                gpu: self.gpu,
                failed: false,
            }));
            let sequences = (0..rows)
                .map(|row| NewSequence {
                    prompt: prompt.clone(),
                    settings: SequenceSettings {
                        max_tokens,
                        temperature: s.temperature,
                        top_k: s.top_k,
                        seed: s.seed.wrapping_add(row as i64),
                        deadline: Some(job.deadline),
                    },
                    sink: Box::new(RowSink {
                        row,
                        request: request.clone(),
                        encoder: scheduler.encoder(),
                        stream: Utf8Stream::new(),
                    }) as Box<dyn SequenceSink + 'a>,
                })
                .collect();
            if scheduler.admit(sequences).is_err() {
                log::error!("worker {}: a job that fitted was not admitted", self.gpu);
            }
        }
    }

    fn publish(
        &self,
        scheduler: &Scheduler<'_>,
        waiting: usize,
        recent: &mut VecDeque<(Instant, usize)>,
        emitted: usize,
    ) {
        let now = Instant::now();
        recent.push_back((now, emitted));
        while recent.front().is_some_and(|(t, _)| now.duration_since(*t) > Duration::from_secs(5)) {
            recent.pop_front();
        }
        let rate = match (recent.front(), scheduler.running()) {
            (Some((first, _)), 1..) if now > *first => {
                recent.iter().map(|r| r.1).sum::<usize>() as f64 / now.duration_since(*first).as_secs_f64()
            }
            _ => 0.0,
        };
        let s = &self.status;
        s.running.store(scheduler.running(), Ordering::Relaxed);
        s.waiting.store(waiting, Ordering::Relaxed);
        s.kv_blocks_in_use.store(scheduler.arena().blocks_in_use(), Ordering::Relaxed);
        s.kv_blocks_total.store(scheduler.arena().blocks_total(), Ordering::Relaxed);
        s.generated.fetch_add(emitted as u64, Ordering::Relaxed);
        s.tokens_per_second.store(rate.to_bits(), Ordering::Relaxed);
    }
}

/// The completions of one request in the batch: each row's end, and the lease, dropped with the last.
struct RequestRows {
    ends: Vec<Option<(usize, FinishReason)>>,
    events: tokio_mpsc::UnboundedSender<WorkerEvent>,
    lease: Option<Lease>,
    gpu: usize,
    failed: bool,
}

/// Streams one completion's text as whole characters.
struct RowSink<'e> {
    row: usize,
    request: Rc<RefCell<RequestRows>>,
    encoder: &'e BpeEncoder,
    stream: Utf8Stream,
}

impl SequenceSink for RowSink<'_> {
    fn token(&mut self, token: u32, _forced: bool) -> bool {
        let text = self.stream.push(self.encoder.token_bytes(token).unwrap_or_default());
        let request = self.request.borrow();
        text.is_empty() || request.events.send(WorkerEvent::Text { row: self.row, text }).is_ok()
    }

    fn is_cancelled(&self) -> bool {
        self.request.borrow().events.is_closed()
    }

    fn finish(&mut self, generated: usize, finish: Finish) {
        let mut request = self.request.borrow_mut();
        let rest = self.stream.finish();
        if !rest.is_empty() {
            let _ = request.events.send(WorkerEvent::Text { row: self.row, text: rest });
        }
        let reason = match finish {
            Finish::Stop => FinishReason::Stop,
            Finish::Length => FinishReason::Length,
            Finish::Timeout => FinishReason::Timeout,
            Finish::Cancelled => FinishReason::Cancelled,
            Finish::Failed => {
                if !request.failed {
                    let error = ApiError::internal("internal error during generation");
                    let _ = request.events.send(WorkerEvent::Failed { error });
                }
                request.failed = true;
                FinishReason::Cancelled
            }
        };
        request.ends[self.row] = Some((generated, reason));
        if request.ends.iter().all(Option::is_some) {
            let rows: Vec<(usize, FinishReason)> = request.ends.iter().flatten().copied().collect();
            if rows.iter().any(|r| r.1 == FinishReason::Cancelled) && !request.failed {
                let tokens: usize = rows.iter().map(|r| r.0).sum();
                log::info!("worker {}: the client left; generation stopped after {tokens} token(s)", request.gpu);
            }
            if !request.failed {
                let _ = request.events.send(WorkerEvent::Finished { rows });
            }
            request.lease = None;
        }
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
    chat_prompt(engine.chat_tokens(), engine.encoder(), turns)
}

fn chat_prompt(t: &ChatTokens, encoder: &BpeEncoder, turns: &[Turn]) -> Vec<u32> {
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

    /// A pool of `n` workers with batches of `max_batch` whose job channels nobody reads: only leasing
    /// is exercised.
    fn pool(
        n: usize,
        max_batch: usize,
        queue_limit: usize,
        queue_timeout: Duration,
    ) -> (WorkerPool, Vec<mpsc::Receiver<Job>>) {
        let (slots, inboxes) = (0..n)
            .map(|_| {
                let (jobs, inbox) = mpsc::channel();
                (Slot { jobs, device: Device::Cpu, status: Arc::default() }, inbox)
            })
            .unzip();
        let model = ModelInfo { id: "m".into(), description: String::new(), created: 0 };
        (WorkerPool::over(slots, max_batch, queue_limit, queue_timeout, model), inboxes)
    }

    /// A model that fails inside libtorch-like code: it panics on every forward.
    struct Broken;

    impl PackedModel for Broken {
        fn kv_shape(&self) -> crate::engine::kv_arena::KvShape {
            crate::engine::kv_arena::KvShape {
                n_layer: 1,
                n_kv_head: 1,
                head_dim: 4,
                kind: tch::Kind::Float,
                device: Device::Cpu,
            }
        }
        fn context(&self) -> Option<usize> {
            None
        }
        fn packed_logits(
            &self,
            _: &tch::Tensor,
            _: &[i64],
            _: &tch::Tensor,
            _: &mut dyn FnMut(usize, &tch::Tensor, &tch::Tensor, &tch::Tensor) -> tch::Tensor,
        ) -> tch::Tensor {
            panic!("simulated failure inside the model")
        }
    }

    #[test]
    fn a_panicking_generation_is_answered_and_the_worker_goes_on() {
        let encoder =
            BpeEncoder::new((0..=255u8).map(|b| vec![b]).collect(), &crate::tokenizer::SPECIAL_TOKENS).unwrap();
        let (pool, mut inboxes) = pool(1, 1, 1, Duration::from_secs(10));
        let inbox = inboxes.pop().unwrap();
        let rt = runtime();
        std::thread::scope(|s| {
            s.spawn(|| {
                let arena = KvArena::new(Broken.kv_shape(), 1).unwrap();
                let limits = BatchLimits { max_batch: 1, prefill_chunk: 16 };
                let scheduler = Scheduler::new(&Broken, &encoder, arena, limits).unwrap();
                let status = Arc::default();
                let worker =
                    Worker { gpu: 0, batch: BatchConfig::default(), queue_timeout: Duration::from_secs(1), status };
                worker.serve(scheduler, inbox)
            });
            // Two jobs in turn: the second needs the worker the first one's failure gave back.
            for _ in 0..2 {
                let lease = rt.block_on(pool.acquire(1)).unwrap();
                let (events, mut rx) = tokio_mpsc::unbounded_channel();
                let turns = vec![Turn { role: Role::User, content: "hi".into() }];
                let settings = settings(1, 4, 0.0, 1, Some(1));
                let (deadline, admit_by) = (Instant::now(), Instant::now() + Duration::from_secs(10));
                pool.submit(Job { turns, settings, deadline, admit_by, events, lease }).unwrap();
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
            let (pool, _inboxes) = pool(2, 1, 1, Duration::from_secs(30));
            let a = pool.acquire(1).await.unwrap();
            let b = pool.acquire(1).await.unwrap();
            assert_ne!(a.worker, b.worker);
            assert_eq!(pool.stats().busy_workers, 2);
            // The third waits in the queue; the fourth finds the queue full: 503 with Retry-After.
            let waiting = pool.acquire(1);
            tokio::pin!(waiting);
            assert!(tokio::time::timeout(Duration::from_millis(20), &mut waiting).await.is_err());
            assert_eq!(pool.stats().queued_requests, 1);
            let refused = pool.acquire(1).await.err().unwrap();
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
            let (pool, _inboxes) = pool(1, 1, 4, Duration::from_millis(50));
            let held = pool.acquire(1).await.unwrap();
            let timed_out = pool.acquire(1).await.err().unwrap();
            assert_eq!(timed_out.status, axum::http::StatusCode::SERVICE_UNAVAILABLE);
            assert!(timed_out.message.contains("no worker had room"), "{}", timed_out.message);
            // A client that leaves while queued no longer counts.
            let gone = tokio::time::timeout(Duration::from_millis(10), pool.acquire(1)).await;
            assert!(gone.is_err());
            assert_eq!(pool.stats().queued_requests, 0);
            drop(held);
            assert!(pool.acquire(1).await.is_ok());
        });
    }
}
