"""Produces tests/golden/bestfit/batches.json by running the reference nanochat's (commit 92d63d4) own
BOS-aligned best-fit loader, `tokenizing_distributed_data_loader_with_state_bos_bestfit` of
nanochat/dataloader.py, on CPU.

Usage: python tests/golden/make_bestfit_golden.py /path/to/nanochat-92d63d4-checkout [out.json]
The checkout is only imported. Its parquet reading is pointed at an in-memory corpus (`ParquetFile`
and `list_parquet_files` replaced, the same corpus tests/dataloader_bestfit.rs builds) and its
tokenizer is byte-level (BOS 0, byte b -> b + 1, as the Rust test's); nothing else is replaced, so the
row-group striding over ranks, the 128-document tokenizer batches, the 1,000-document buffer and the
best-fit packing with cropping are the reference's. For each (rank, world) it records the first 50
batches of B=4 rows of T=64: the sha256 of each batch (inputs then targets, int64 little-endian) and
the first 2 batches in full, and the loader's state after each (`pq_idx`, `rg_idx`, `epoch`; the
reference counts epochs from 1). Then, for rank 1 of 2, the first 3 batches of loaders resumed from
some of those states.
"""
import hashlib, json, os, sys, types

ref = sys.argv[1]
out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "bestfit", "batches.json")
sys.path.insert(0, ref)
for stub in ("rustbpe", "tiktoken"):
    sys.modules.setdefault(stub, types.ModuleType(stub))
import torch
import nanochat.dataloader as dl

SHARDS = [(0, 5), (1, 3), (2, 4)]  # (shard, row groups)
DOCS_PER_GROUP = 150


def document(s, g, d):
    """Lengths from 6 to about 160 bytes: some fit a 65-token row several times, some must be cropped."""
    return f"s{s} g{g} d{d} " + "x" * ((d * 37 + g * 11 + s * 5) % 151)


class Column:
    def __init__(self, docs):
        self.docs = docs
    def to_pylist(self):
        return list(self.docs)


class RowGroup:
    def __init__(self, docs):
        self.docs = docs
    def column(self, name):
        assert name == "text"
        return Column(self.docs)


class FakeParquetFile:
    def __init__(self, path):
        self.s = int(path.split("_")[1].split(".")[0])
        self.num_row_groups = dict(SHARDS)[self.s]
    def read_row_group(self, g):
        return RowGroup([document(self.s, g, d) for d in range(DOCS_PER_GROUP)])


class ByteTokenizer:
    def get_bos_token_id(self):
        return 0
    def encode(self, texts, prepend=None, num_threads=None):
        return [([prepend] if prepend is not None else []) + [b + 1 for b in t.encode("utf-8")] for t in texts]


dl.pq = types.SimpleNamespace(ParquetFile=FakeParquetFile)
# The reference's split: every file but the last is train.
dl.list_parquet_files = lambda warn_on_legacy=False: [f"shard_{s:05}.parquet" for s, _ in SHARDS]

def digest(x, y):
    return hashlib.sha256(x.contiguous().numpy().astype("<i8").tobytes() + y.contiguous().numpy().astype("<i8").tobytes()).hexdigest()


B, T, N = 4, 64, 50
runs = []
for rank, world in [(0, 1), (0, 2), (1, 2)]:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world))
    if world == 1:
        for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
            os.environ.pop(k)
    loader = dl.tokenizing_distributed_data_loader_with_state_bos_bestfit(ByteTokenizer(), B, T, "train", device="cpu")
    digests, full, states = [], [], []
    for i in range(N):
        x, y, state = next(loader)
        states.append([state["pq_idx"], state["rg_idx"], state["epoch"]])
        digests.append(digest(x, y))
        if i < 2:
            full.append({"inputs": x.tolist(), "targets": y.tolist()})
    runs.append({"rank": rank, "world": world, "sha256": digests, "first": full, "states": states})

resumed = []
os.environ.update(RANK="1", LOCAL_RANK="1", WORLD_SIZE="2")
for state in [[0, 1, 1], [1, 1, 1], [0, 3, 2], [1, 1, 3]]:
    loader = dl.tokenizing_distributed_data_loader_with_state_bos_bestfit(
        ByteTokenizer(), B, T, "train", device="cpu",
        resume_state_dict={"pq_idx": state[0], "rg_idx": state[1], "epoch": state[2]})
    # Each yield is a view of the loader's one output buffer: hashed before the next overwrites it.
    resumed.append({"from": state, "sha256": [digest(*next(loader)[:2]) for _ in range(3)]})
for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
    os.environ.pop(k, None)

golden = {
    "notes": [
        "Made by tests/golden/make_bestfit_golden.py: the reference nanochat at 92d63d4, "
        "tokenizing_distributed_data_loader_with_state_bos_bestfit on CPU, torch " + torch.__version__,
    ],
    "batch_size": B, "seq_len": T, "shards": SHARDS, "docs_per_group": DOCS_PER_GROUP, "bos": 0,
    "runs": runs, "resumed": resumed,
}
os.makedirs(os.path.dirname(out), exist_ok=True)
with open(out, "w") as f:
    json.dump(golden, f, separators=(",", ":"))
print("wrote", out, os.path.getsize(out), "bytes")
