"""Produces tests/golden/sft_bestfit/batches.json by running the reference nanochat's (commit 92d63d4) own
SFT loader, `sft_data_generator_bos_bestfit` of scripts/chat_sft.py, on CPU.

Usage: python tests/golden/make_sft_bestfit_golden.py /path/to/nanochat-92d63d4-checkout [out.json]
The checkout is only imported and read. chat_sft.py's lines from its `last_step = False` global to the
end of the generator (the three globals and the function) are executed from its source, with the
globals the generator reads set here: `args` (max_seq_len, device_batch_size, num_iterations),
`train_dataset`, `val_dataset`, `tokenizer`, `ddp_rank`, `ddp_world_size`, `device_type="cpu"`.
The datasets are 92d63d4's own tasks and TaskMixture, built as chat_sft.py builds them (SmolTalk train
+ MMLU all/auxiliary_train x 3 + GSM8K main/train x 4; SmolTalk test + MMLU all/test[:5200] + GSM8K
main/test[:420]), with `load_hub_dataset` pointed at the stand-in datasets in manifests/data/chat_smoke
(their parquet files sorted, concatenated, wrapped in the reference's HubDataset whose seeded shuffle
then runs). The stand-ins hold MMLU's auxiliary rows only as the auxiliary_train config's train split,
each row nested in a `train` struct: for ("cais/mmlu", "all", "auxiliary_train") the struct is
flattened into the flat columns the Hub's all/auxiliary_train has. The tokenizer is the reference's
RustBPETokenizer over tests/golden/chat/tokenizer.pkl (vocab 2,048), so rendering is 92d63d4's
`render_conversation` (max_tokens 2048).

Recorded, for each run (a dataset, split, rank/world, B, T, buffer size, num_iterations): per batch
the sha256 of inputs then targets (both int64 little-endian; the reference's inputs are int32 on the
device, same values), the generator's counters after the batch (its locals cursor, consumed, epoch,
it), the globals it drives (approx_progress, as Python's repr so that it parses back exactly,
current_epoch, last_step; untouched for split "val"), and the first 2 batches in full. Runs on "small" (GSM8K main/test[:30] + MMLU all/dev, 45
conversations, fewer than the buffer) cover the cursor wrapping while the buffer refills, epochs,
`consumed >= len` and num_iterations. Also the three datasets' lengths and the head of their index_map.
"""
import hashlib, json, os, sys, types

ref = sys.argv[1]
out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "sft_bestfit", "batches.json")
root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
standins = os.path.join(root, "manifests", "data", "chat_smoke")
sys.path.insert(0, ref)
import torch
from tasks.common import TaskMixture
from tasks.gsm8k import GSM8K
from tasks.mmlu import MMLU
from tasks.smoltalk import SmolTalk
from nanochat.tokenizer import RustBPETokenizer
from reference_source import ScriptSource, use_chat_standins


use_chat_standins(standins)

GENERATOR = ScriptSource(ref, "chat_sft.py").between("last_step = False", "train_loader = sft_data_generator_bos_bestfit")

tokenizer = RustBPETokenizer.from_directory(os.path.join(root, "tests", "golden", "chat"))
MMLU_EPOCHS, GSM8K_EPOCHS = 3, 4
datasets = {
    "train": TaskMixture([
        SmolTalk(split="train"),
        *[MMLU(subset="all", split="auxiliary_train") for _ in range(MMLU_EPOCHS)],
        *[GSM8K(subset="main", split="train") for _ in range(GSM8K_EPOCHS)],
    ]),
    "val": TaskMixture([
        SmolTalk(split="test"),
        MMLU(subset="all", split="test", stop=5200),
        GSM8K(subset="main", split="test", stop=420),
    ]),
    "small": TaskMixture([GSM8K(subset="main", split="test", stop=30), MMLU(subset="all", split="dev")]),
}


def digest(x, y):
    return hashlib.sha256(x.to(torch.int64).numpy().astype("<i8").tobytes() + y.numpy().astype("<i8").tobytes()).hexdigest()


def run(dataset, split, rank, world, B, T, buffer_size, num_iterations, n):
    env = dict(
        args=types.SimpleNamespace(max_seq_len=T, device_batch_size=B, num_iterations=num_iterations),
        train_dataset=datasets[dataset], val_dataset=datasets[dataset], tokenizer=tokenizer,
        ddp_rank=rank, ddp_world_size=world, device_type="cpu", device="cpu", torch=torch,
    )
    exec(GENERATOR, env)
    gen = env["sft_data_generator_bos_bestfit"](split, buffer_size=buffer_size)
    batches = []
    for i in range(n):
        x, y = next(gen)
        l = gen.gi_frame.f_locals
        b = {"sha256": digest(x, y), "cursor": l["cursor"], "consumed": l["consumed"], "epoch": l["epoch"], "it": l["it"],
             "approx_progress": repr(env["approx_progress"]), "current_epoch": env["current_epoch"], "last_step": env["last_step"]}
        if i < 2:
            b["inputs"], b["targets"] = x.tolist(), y.tolist()
        batches.append(b)
    return {"dataset": dataset, "split": split, "rank": rank, "world": world, "batch_size": B, "seq_len": T,
            "buffer_size": buffer_size, "num_iterations": num_iterations, "batches": batches}


runs = [run("train", "train", r, w, 4, 128, 100, -1, 25) for r, w in [(0, 1), (0, 2), (1, 2)]]
runs.append(run("val", "val", 1, 2, 3, 96, 100, -1, 10))
runs += [run("small", "train", r, w, 2, 64, 100, -1, 12) for r, w in [(0, 1), (1, 2)]]
runs.append(run("small", "train", 0, 2, 3, 80, 7, 5, 8))

golden = {
    "notes": ["Made by tests/golden/make_sft_bestfit_golden.py: the reference nanochat at 92d63d4, chat_sft.py's "
              "sft_data_generator_bos_bestfit on CPU over the chat_smoke stand-ins, torch " + torch.__version__],
    "bos": tokenizer.get_bos_token_id(),
    "mixtures": {k: {"len": len(d), "index_map_head": [list(p) for p in d.index_map[:300]]} for k, d in datasets.items()},
    "runs": runs,
}
os.makedirs(os.path.dirname(out), exist_ok=True)
with open(out, "w") as f:
    json.dump(golden, f, separators=(",", ":"))
print("wrote", out, os.path.getsize(out), "bytes")
