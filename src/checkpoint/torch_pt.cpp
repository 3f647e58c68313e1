// Writes a `.pt` state_dict laid out as Python's torch.save lays it out: data.pkl from libtorch's
// pickler (the one torch::pickle_save uses, here without TorchScript type tags) and the archive from
// torch.save's own zip writer (caffe2::serialize::PyTorchStreamWriter), records in torch.save's
// order. src/checkpoint/torch_pt.rs is the Rust side; errors follow src/shim_guard.h.
#include <ATen/ATen.h>
#include <ATen/core/Dict.h>
#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/serialization/pickler.h>

#include "../shim_guard.h"

#include <string>

extern "C" {

// Writes {names[i]: tensors[i]} (a plain dict, in this order) as torch.save(dict, f) does, passing
// the bytes to `sink(ctx, data, n)`. Each tensor is stored as a CPU tensor without autograd state,
// contiguous and alone in its storage (a view of a larger tensor is copied out); tensors that share
// one storage share its record. The pickle has no TorchScript type tags, which
// torch.load(weights_only=True) would refuse. `sink` must report every byte as written: a writer
// that sees a failure throws again from its destructor, which ends the process, so the caller
// keeps a write error to itself and reports it once this returns.
int nc_pt_save(const char* const* names, at::Tensor* const* tensors, size_t n,
               size_t (*sink)(void*, const void*, size_t), void* ctx, char* err, size_t err_len) {
  return nc_shim::guarded(err, err_len, [&] {
    c10::Dict<std::string, at::Tensor> dict;
    for (size_t i = 0; i < n; ++i) {
      auto t = tensors[i]->detach().cpu().resolve_conj().resolve_neg().contiguous();
      if (t.storage_offset() != 0 || t.storage().nbytes() != t.nbytes()) t = t.clone();
      dict.insert(names[i], t);
    }
    std::string pickle;
    torch::jit::Pickler pickler([&](const char* data, size_t len) { pickle.append(data, len); }, nullptr,
                                nullptr, nullptr, nullptr, /*tag_aggregates=*/false);
    pickler.protocol();
    pickler.pushIValue(dict);
    pickler.stop();

    caffe2::serialize::PyTorchStreamWriter writer([&](const void* data, size_t len) { return sink(ctx, data, len); });
    writer.writeRecord("data.pkl", pickle.data(), pickle.size());
    writer.writeRecord(".format_version", "1", 1);
    writer.writeRecord(".storage_alignment", "64", 2);
    writer.writeRecord("byteorder", "little", 6);
    // The pickler names storage i "i" (its persistent id's key), in the order it met them.
    const auto& storages = pickler.tensorData();
    for (size_t i = 0; i < storages.size(); ++i) {
      const auto& storage = storages[i].storage();
      writer.writeRecord("data/" + std::to_string(i), storage.data(), storage.nbytes());
    }
    writer.writeEndOfFile();  // `version` and `.data/serialization_id`, then the central directory
  });
}

}  // extern "C"
