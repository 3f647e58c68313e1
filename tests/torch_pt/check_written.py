# Loads a .pt written by the Rust writer with torch.load(weights_only=True) (also with mmap=True)
# and compares it with the expected sidecar exactly: key order, dtype, shape, bytes.
# usage: check_written.py FILE.pt EXPECTED.tsv [RESAVE.pt]
# With RESAVE.pt the loaded dict is torch.save'd again there (for the Rust reader to compare).
import os
import sys
import warnings

warnings.filterwarnings("ignore")
import torch  # noqa: E402

from common import BY_NAME, read_expected, tensor_bytes  # noqa: E402

path, expected_path = sys.argv[1], sys.argv[2]
expected = read_expected(expected_path)


def check(state, how):
    if type(state) is not dict:
        sys.exit(f"{how}: loaded a {type(state).__name__}, expected dict")
    names = list(state.keys())
    want = [e[0] for e in expected]
    if names != want:
        sys.exit(f"{how}: keys {names[:5]}... differ from expected {want[:5]}...")
    for name, dtype, shape, data in expected:
        t = state[name]
        if not isinstance(t, torch.Tensor):
            sys.exit(f"{how}: {name} is a {type(t).__name__}")
        if t.dtype != BY_NAME[dtype]:
            sys.exit(f"{how}: {name} dtype {t.dtype} != {dtype}")
        if list(t.shape) != shape:
            sys.exit(f"{how}: {name} shape {list(t.shape)} != {shape}")
        if not t.is_contiguous() or t.requires_grad or t.device.type != "cpu":
            sys.exit(f"{how}: {name} contiguous={t.is_contiguous()} requires_grad={t.requires_grad} {t.device}")
        if tensor_bytes(t) != data:
            sys.exit(f"{how}: {name} values differ")


state = torch.load(path, map_location="cpu", weights_only=True)
check(state, "weights_only=True")
check(torch.load(path, map_location="cpu", weights_only=True, mmap=True), "mmap=True")
check(torch.load(path, map_location="cpu", weights_only=False), "weights_only=False")
# torch's optional fast path computes record offsets from miniz's layout instead of reading the
# zip headers; with TORCH_SERIALIZATION_DEBUG=1 it also asserts they match the real offsets.
os.environ["TORCH_SERIALIZATION_DEBUG"] = "1"
from torch.utils.serialization import config  # noqa: E402

config.load.calculate_storage_offsets = True
check(torch.load(path, map_location="cpu", weights_only=True, mmap=True), "calculate_storage_offsets+mmap")
check(torch.load(path, map_location="cpu", weights_only=True), "TORCH_SERIALIZATION_DEBUG")
config.load.calculate_storage_offsets = False
del os.environ["TORCH_SERIALIZATION_DEBUG"]

if len(sys.argv) > 3:
    torch.save(state, sys.argv[3])
print(f"OK {len(expected)} tensors")
