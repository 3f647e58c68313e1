# Writes torch.save fixtures plus expected-value sidecars for the Rust reader test.
# usage: make_fixtures.py OUTDIR  -> OUTDIR/<name>.pt and OUTDIR/<name>.expected.tsv
import collections
import os
import sys
import warnings

warnings.filterwarnings("ignore")
import torch  # noqa: E402

from common import tensor_bytes, write_expected  # noqa: E402

out = sys.argv[1]
g = torch.Generator().manual_seed(1234)


def save(name, state, expected=None):
    path = os.path.join(out, name + ".pt")
    torch.save(state, path)
    write_expected(os.path.join(out, name + ".expected.tsv"), expected if expected is not None else state)


# 1. A plain dict mixing dtypes, special values and views that share storages.
f32 = torch.randn(4, 5, generator=g)
f32[0, 0], f32[0, 1], f32[0, 2], f32[0, 3], f32[0, 4] = float("inf"), float("-inf"), float("nan"), -0.0, 1e-45
bf16 = torch.randn(3, 7, generator=g).to(torch.bfloat16)
bf16[0, 0], bf16[0, 1], bf16[0, 2] = float("inf"), float("nan"), -0.0
base = torch.randn(3, 4, generator=g)
big = torch.arange(20, dtype=torch.float32).reshape(5, 4)
line = torch.randn(16, generator=g).to(torch.bfloat16)
four_d = torch.randn(2, 3, 4, 5, generator=g)
mixed = {
    "f32": f32,
    "bf16": bf16,
    "i64": torch.tensor([0, 1, -1, 2**62, -(2**62), 2**63 - 1, -(2**63)], dtype=torch.int64),
    "base": base,
    "base_t": base.t(),  # non-contiguous view of the same storage
    "rows_2_on": big[2:],  # contiguous, storage offset 8
    "cols_1_3": big[:, 1:3],  # non-contiguous, storage offset 1
    "strided_bf16": line[3:12:2],  # stride 2, offset 3
    "expanded": torch.arange(3, dtype=torch.float32).expand(4, 3),  # stride 0
    "permuted_4d": four_d.permute(2, 0, 3, 1),
    "scalar_f64": torch.tensor(3.141592653589793, dtype=torch.float64),
    "empty": torch.zeros(0, 3),
    "bool": torch.tensor([True, False, True]),
    "u8": torch.arange(0, 256, 7, dtype=torch.uint8),
    "i32": torch.tensor([[-(2**31), 2**31 - 1], [5, -6]], dtype=torch.int32),
    "f16": torch.randn(2, 2, generator=g).to(torch.float16),
    "f64": torch.randn(3, generator=g, dtype=torch.float64),
}
save("mixed", mixed)


# 2. A real module's state_dict (an OrderedDict carrying `_metadata`, restored with BUILD), in bf16,
#    plus names with the `_orig_mod.` prefix torch.compile adds (must come back unchanged).
class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.wte = torch.nn.Embedding(11, 8)
        self.proj = torch.nn.Linear(8, 6, bias=True)
        self.norm = torch.nn.LayerNorm(6)
        self.register_buffer("cos", torch.randn(1, 5, 1, 4))


torch.manual_seed(0)
model = Tiny()
sd = model.state_dict()
assert isinstance(sd, collections.OrderedDict) and hasattr(sd, "_metadata")
save("model_000100", sd)
sd_bf16 = Tiny().to(torch.bfloat16).state_dict()
save("model_bf16", sd_bf16)
compiled_like = collections.OrderedDict(("_orig_mod." + k, v) for k, v in sd.items())
save("orig_mod", compiled_like)

# 3. Many entries (memo indices > 255: LONG_BINPUT / LONG_BINGET) and a large numel (BININT).
many = collections.OrderedDict()
for i in range(300):
    many[f"layer.{i}.weight"] = torch.randn(2, i % 5 + 1, generator=g)
many["big"] = torch.randn(70000, generator=g).to(torch.bfloat16)
save("many", many)

# 4. nn.Parameter values (pickled via torch._utils._rebuild_parameter).
params = {"w": torch.nn.Parameter(torch.randn(3, 3, generator=g)), "b": torch.nn.Parameter(torch.zeros(3))}
save("params", params)

# 5. Saved through a file object under another name: the archive folder is then `archive`.
buf_state = {"x": torch.arange(6, dtype=torch.int64).reshape(2, 3)}
with open(os.path.join(out, "from_buffer.pt"), "wb") as f:
    torch.save(buf_state, f)
write_expected(os.path.join(out, "from_buffer.expected.tsv"), buf_state)

# 6. The `mixed` archive re-zipped by Python's zipfile: no 64-byte alignment padding and no data
#    descriptors (torch.load accepts this too, including with mmap=True).
import zipfile  # noqa: E402

with zipfile.ZipFile(os.path.join(out, "mixed.pt")) as src:
    with zipfile.ZipFile(os.path.join(out, "unaligned.pt"), "w", compression=zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
write_expected(os.path.join(out, "unaligned.expected.tsv"), mixed)
reloaded = torch.load(os.path.join(out, "unaligned.pt"), weights_only=True, mmap=True)
assert all(tensor_bytes(reloaded[k]) == tensor_bytes(v) for k, v in mixed.items())

print("fixtures written")
