// C API over libtorch's c10d (the engine under torchrun and DDP): TCPStore rendezvous, then
// ProcessGroupNCCL (CUDA tensors) or ProcessGroupGloo (CPU tensors), and the collectives nanochat
// needs. Tensors arrive as tch's `at::Tensor*`. Every call runs through nc_shim::guarded (src/shim_guard.h):
// an exception's message goes into the caller's buffer and the call returns non-zero. DESIGN.md "libtorch and
// the build".
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "../shim_guard.h"

#include <chrono>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

namespace {

using nc_shim::guarded;

struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  bool gloo;
  int world;
  std::chrono::milliseconds timeout;
};

c10d::ReduceOp reduce_op(int op) {
  switch (op) {
    case 0: return c10d::ReduceOp::SUM;
    case 1: return c10d::ReduceOp::AVG;
    case 2: return c10d::ReduceOp::MAX;
    case 3: return c10d::ReduceOp::MIN;
    default: TORCH_CHECK(false, "unknown reduce op ", op);
  }
}

// Gloo has no AVG: sum, then divide by the world size.
bool needs_manual_avg(const Group* g, int op) { return g->gloo && op == 1; }
int effective_op(const Group* g, int op) { return needs_manual_avg(g, op) ? 0 : op; }

// A collective in flight, owned by the caller until nc_work_free; its group must outlive it.
struct Pending {
  c10::intrusive_ptr<c10d::Work> work;
  bool gloo;
  std::chrono::milliseconds timeout;
  // Defined for a Gloo AVG: the summed output, divided by `world` when the wait returns.
  at::Tensor divide;
  int world;
};

Pending* pending(const Group* g, c10::intrusive_ptr<c10d::Work> work) {
  return new Pending{std::move(work), g->gloo, g->timeout, at::Tensor(), g->world};
}

// Gloo: blocks this thread until the collective has finished, or throws once the group's timeout has
// passed. NCCL: work->wait() without a timeout is WorkNCCL::synchronize(), which makes the thread's current
// CUDA stream wait for the collective's end event and returns without waiting on the host (unless
// TORCH_NCCL_BLOCKING_WAIT=1 is set); a collective that runs past the timeout given to the group at
// creation (Options::timeout) is caught by c10d's watchdog thread, which under the default
// TORCH_NCCL_ASYNC_ERROR_HANDLING ends the process. Passing a timeout to WorkNCCL::wait would instead
// block the host until the collective completes. Either way the wait throws the error c10d recorded for
// the collective, if any.
void wait(Pending& p) {
  if (p.gloo) {
    p.work->wait(p.timeout);
  } else {
    p.work->wait();
  }
  if (p.divide.defined()) p.divide.div_(p.world);
}

}  // namespace

extern "C" {

// backend: "gloo" or "nccl". Returns NULL and fills `err` on failure.
void* nc_group_new(const char* backend, const char* master_addr, int port, int rank, int world, int timeout_ms,
                   char* err, size_t err_len) {
  Group* result = nullptr;
  guarded(err, err_len, [&] {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    c10d::TCPStoreOptions opts;
    opts.port = static_cast<std::uint16_t>(port);
    opts.isServer = rank == 0;
    opts.numWorkers = world;
    opts.waitWorkers = true;
    opts.timeout = timeout;
    auto tcp = c10::make_intrusive<c10d::TCPStore>(std::string(master_addr), opts);
    std::string name(backend);
    auto store = c10::make_intrusive<c10d::PrefixStore>(name, tcp);
    auto g = std::make_unique<Group>();
    g->store = store;
    g->world = world;
    g->timeout = timeout;
    if (name == "gloo") {
      auto gopts = c10d::ProcessGroupGloo::Options::create(timeout);
      gopts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(std::string(master_addr)));
      g->backend = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, gopts);
      g->gloo = true;
    } else if (name == "nccl") {
#ifdef USE_C10D_NCCL
      auto nopts = c10d::ProcessGroupNCCL::Options::create();
      nopts->timeout = timeout;
      g->backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world, nopts);
      // The rank's device, bound before the group starts (src/hw/device.rs), as init_process_group(device_id=...).
      g->backend->setBoundDeviceId(at::Device(at::kCUDA, c10::cuda::current_device()));
      g->gloo = false;
#else
      TORCH_CHECK(false, "this build has no NCCL support");
#endif
    } else {
      TORCH_CHECK(false, "unknown backend ", name, " (expected gloo or nccl)");
    }
    result = g.release();
  });
  return result;
}

void nc_group_free(void* group) { delete static_cast<Group*>(group); }

// The collectives below start the operation and hand back an owned handle in *work (NULL on failure):
// nc_work_wait makes its result visible to the caller (see `wait` above), nc_work_free releases the
// handle. c10d holds its own references to the tensors and finishes a collective whose handle is freed
// without a wait; its result is then left as the collective wrote it (a Gloo AVG stays a sum).
int nc_work_wait(void* work, char* err, size_t err_len) {
  return guarded(err, err_len, [&] { wait(*static_cast<Pending*>(work)); });
}

void nc_work_free(void* work) { delete static_cast<Pending*>(work); }

int nc_allreduce(void* group, at::Tensor* t, int op, void** work, char* err, size_t err_len) {
  auto* g = static_cast<Group*>(group);
  *work = nullptr;
  return guarded(err, err_len, [&] {
    std::vector<at::Tensor> ts{*t};
    c10d::AllreduceOptions o;
    o.reduceOp = reduce_op(effective_op(g, op));
    o.timeout = g->timeout;
    auto* p = pending(g, g->backend->allreduce(ts, o));
    if (needs_manual_avg(g, op)) p->divide = *t;
    *work = p;
  });
}

// input: world * output.numel() elements (flat, rank-major); output receives this rank's slice.
int nc_reduce_scatter(void* group, at::Tensor* output, at::Tensor* input, int op, void** work, char* err,
                      size_t err_len) {
  auto* g = static_cast<Group*>(group);
  *work = nullptr;
  return guarded(err, err_len, [&] {
    c10d::ReduceScatterOptions o;
    o.reduceOp = reduce_op(effective_op(g, op));
    o.timeout = g->timeout;
    Pending* p;
    if (g->gloo) {
      // Gloo's reduce_scatter takes a list of per-rank inputs (views of `input`).
      std::vector<at::Tensor> outs{*output};
      std::vector<std::vector<at::Tensor>> ins(1);
      auto chunks = input->reshape({g->world, -1});
      for (int r = 0; r < g->world; ++r) ins[0].push_back(chunks[r].reshape(output->sizes()).contiguous());
      p = pending(g, g->backend->reduce_scatter(outs, ins, o));
    } else {
      p = pending(g, g->backend->_reduce_scatter_base(*output, *input, o));
    }
    if (needs_manual_avg(g, op)) p->divide = *output;
    *work = p;
  });
}

// output: world * input.numel() elements (flat, rank-major).
int nc_all_gather(void* group, at::Tensor* output, at::Tensor* input, void** work, char* err, size_t err_len) {
  auto* g = static_cast<Group*>(group);
  *work = nullptr;
  return guarded(err, err_len, [&] {
    c10d::AllgatherOptions o;
    o.timeout = g->timeout;
    *work = pending(g, g->backend->_allgather_base(*output, *input, o));
  });
}

int nc_broadcast(void* group, at::Tensor* t, int root, void** work, char* err, size_t err_len) {
  auto* g = static_cast<Group*>(group);
  *work = nullptr;
  return guarded(err, err_len, [&] {
    std::vector<at::Tensor> ts{*t};
    c10d::BroadcastOptions o;
    o.rootRank = root;
    o.timeout = g->timeout;
    *work = pending(g, g->backend->broadcast(ts, o));
  });
}

// Blocking on Gloo; on NCCL as the other waits (ProcessGroupNCCL's barrier work also synchronizes the
// current stream with the host).
int nc_barrier(void* group, char* err, size_t err_len) {
  auto* g = static_cast<Group*>(group);
  return guarded(err, err_len, [&] {
    c10d::BarrierOptions o;
    o.timeout = g->timeout;
    Pending p{g->backend->barrier(o), g->gloo, g->timeout, at::Tensor(), g->world};
    wait(p);
  });
}

}  // extern "C"
