# Shared helpers for the interop test scripts: the expected-values sidecar format.
# One line per tensor: name <TAB> dtype <TAB> comma-separated shape <TAB> hex of the contiguous
# little-endian bytes. Lines keep the dict's order.
import torch

DTYPES = {
    torch.float32: "float32",
    torch.bfloat16: "bfloat16",
    torch.float16: "float16",
    torch.float64: "float64",
    torch.int64: "int64",
    torch.int32: "int32",
    torch.uint8: "uint8",
    torch.bool: "bool",
}
BY_NAME = {v: k for k, v in DTYPES.items()}


def tensor_bytes(t):
    flat = t.detach().contiguous().reshape(-1)
    return bytes(flat.view(torch.uint8).tolist())


def write_expected(path, state):
    with open(path, "w", encoding="utf-8") as f:
        for name, t in state.items():
            assert "\t" not in name and "\n" not in name
            shape = ",".join(str(d) for d in t.shape)
            f.write(f"{name}\t{DTYPES[t.dtype]}\t{shape}\t{tensor_bytes(t).hex()}\n")


def read_expected(path):
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            name, dtype, shape, data = line.rstrip("\n").split("\t")
            dims = [int(d) for d in shape.split(",")] if shape else []
            out.append((name, dtype, dims, bytes.fromhex(data)))
    return out
