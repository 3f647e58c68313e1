"""The safetensors writer the golden scripts share (`from safetensors_writer import write_safetensors`):
tensors in insertion order, fp32/fp64/int64, string metadata; the header padded to 8 bytes."""
import json, struct

import torch

DTYPES = {torch.float32: ("F32", "f"), torch.float64: ("F64", "d"), torch.int64: ("I64", "q")}


def cpu_model():
    """This machine's CPU model name (/proc/cpuinfo), recorded by goldens whose bits depend on it: libtorch's
    vectorized CPU kernels round differently on different instruction sets."""
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def write_safetensors(path, tensors, meta):
    header, blobs, offset = {"__metadata__": meta}, [], 0
    for name, t in tensors.items():
        dt, fmt = DTYPES[t.dtype]
        flat = t.contiguous().flatten().tolist()
        blob = struct.pack("<%d%s" % (len(flat), fmt), *flat)
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        f.write(b"".join(blobs))
