// Counts the ATen operators a stretch of work dispatches, by phase, through a global RecordFunction
// callback (the hook torch.profiler uses): every operator call, the "leaf" calls that call no other operator
// (where kernels are launched), the leaves that launch a kernel (the leaves minus metadata-only operators such as
// views and empty allocations) and the calls that make the host wait for the device (reading a value back, or an
// output whose size depends on the data). src/op_count.rs is the Rust side; errors follow src/shim_guard.h.
#include <ATen/record_function.h>

#include "shim_guard.h"

#include <atomic>
#include <cstdint>
#include <cstring>
#include <string>
#include <unordered_set>
#include <vector>

namespace {

constexpr int kPhases = 8;
constexpr int kCounters = 4;  // operators, leaves, kernels, host syncs

std::atomic<uint64_t> counts[kPhases][kCounters];
std::atomic<int> phase{0};
std::atomic<bool> installed{false};
at::CallbackHandle handle = 0;

// Per thread: for each operator being run, whether it has called another operator yet.
thread_local std::vector<bool> open_calls;

bool is_metadata_only(const char* name) {
  static const std::unordered_set<std::string> names = {
      "aten::empty", "aten::empty_strided", "aten::view", "aten::_unsafe_view", "aten::as_strided",
      "aten::_reshape_alias", "aten::alias", "aten::detach", "aten::detach_", "aten::transpose", "aten::t",
      "aten::permute", "aten::expand", "aten::narrow", "aten::slice", "aten::select", "aten::unsqueeze",
      "aten::squeeze", "aten::resize_", "aten::set_", "aten::lift_fresh", "aten::view_as", "aten::unfold",
      "aten::split", "aten::split_with_sizes", "aten::chunk", "aten::unbind", "aten::result_type",
      "aten::is_nonzero", "aten::_local_scalar_dense", "aten::numpy_T", "aten::reshape", "aten::contiguous",
      "aten::_has_compatible_shallow_copy_type", "aten::is_same_size", "aten::requires_grad_",
  };
  return names.count(name) > 0;
}

bool syncs_the_host(const char* name) {
  static const std::unordered_set<std::string> names = {
      "aten::_local_scalar_dense", "aten::nonzero", "aten::masked_select", "aten::_unique2", "aten::equal",
      "aten::nonzero_static",
  };
  return names.count(name) > 0;
}

void add(int counter) { counts[phase.load(std::memory_order_relaxed)][counter].fetch_add(1, std::memory_order_relaxed); }

std::unique_ptr<at::ObserverContext> on_start(const at::RecordFunction& fn) {
  if (!open_calls.empty()) open_calls.back() = true;
  open_calls.push_back(false);
  add(0);
  if (syncs_the_host(fn.name())) add(3);
  return nullptr;
}

void on_end(const at::RecordFunction& fn, at::ObserverContext*) {
  if (open_calls.empty()) return;  // started before the callback was installed
  bool called_others = open_calls.back();
  open_calls.pop_back();
  if (called_others) return;
  add(1);
  if (!is_metadata_only(fn.name())) add(2);
}

}  // namespace

extern "C" {

// Installs the callback (once) and sets every counter to zero, in phase 0.
int nc_opcount_start(char* err, size_t err_len) {
  return nc_shim::guarded(err, err_len, [&] {
    for (auto& row : counts)
      for (auto& c : row) c.store(0);
    phase.store(0);
    if (!installed.exchange(true)) {
      handle = at::addGlobalCallback(
          at::RecordFunctionCallback(on_start, on_end).scopes({at::RecordScope::FUNCTION}));
    }
  });
}

// What is counted from now on goes to phase `p` (0..8).
void nc_opcount_phase(int p) { phase.store(p < 0 || p >= kPhases ? 0 : p); }

// Removes the callback and copies the counters, phase-major (phase 0's four counters first), into `out`
// (8 x 4 values).
int nc_opcount_stop(uint64_t* out, char* err, size_t err_len) {
  return nc_shim::guarded(err, err_len, [&] {
    if (installed.exchange(false)) at::removeCallback(handle);
    for (int p = 0; p < kPhases; ++p)
      for (int c = 0; c < kCounters; ++c) out[p * kCounters + c] = counts[p][c].load();
  });
}

}  // extern "C"
