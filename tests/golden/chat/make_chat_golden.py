#!/usr/bin/env python3
"""Golden fixtures for the chat half, made by RUNNING the reference (Karpathy's nanochat at commit
10231df, "[A']" of NANOCHAT.md) on CPU over the stand-in datasets in manifests/data/chat_smoke/.
No reference code is copied here: the checkout given with --nanochat is imported and its scripts are
run with runpy; this file only routes its inputs to the stand-ins and records what it computes.

Command and environment used for the committed fixtures (repository root as working directory):

    git --git-dir=<mirror of github.com/karpathy/nanochat> archive 10231df | tar -x -C /tmp/nanochat-ref
    pip install --target /tmp/refdeps datasets psutil        # datasets 5.2.0, psutil; numpy 2.4.6, pyarrow 26.0.1
    PYTHONPATH=/tmp/refdeps .venv/bin/python tests/golden/chat/make_chat_golden.py \
        --nanochat /tmp/nanochat-ref --out tests/golden/chat [--phase all|tok|render|tasks|eval|mix|train|engine|rl]
    (.venv: CPython 3.11.7, torch 2.11.0 (CPU used), tiktoken 0.14.0, rustbpe 0.1.0 from PyPI = the
    reference's inline rustbpe/, tokenizers 0.22.2.)

How the reference is routed (monkeypatches, all in this file, all recorded in the fixtures' `notes`):
  * datasets.load_dataset(repo, config, split=...) -> datasets.load_dataset("parquet", data_files=<the
    stand-in files of that repo/config/split, sorted>, split=split); the reference's own .shuffle(seed=42)
    and .map() then run for real.
  * identity_conversations.jsonl and words_alpha.txt are copied into the scratch NANOCHAT_BASE_DIR, where
    the reference looks for them (its downloader returns an existing file untouched).
  * torch.compile is replaced by identity (no C++ toolchain needed for inductor on CPU). This matters for
    Muon's zeropower_via_newtonschulz5 (decorated with @torch.compile) and mid_train.py's
    torch.compile(model): the fixtures are eager-mode numbers.
  * `wandb` is replaced by an empty module (the scripts import it; run="dummy" never calls it).
  * The tokenizer is trained by running scripts/tok_train.py itself with nanochat.dataset.
    parquets_iter_batched replaced by an iterator over the documents described in tokenizer_meta.json.
  * rl phase only: nanochat.common.compute_init runs with device_type="cpu" (chat_rl.py has no device
    setting), and RlRecorder wraps GPT.forward, Tensor.backward, Muon.step, Engine.generate_batch,
    GSM8K.reward and DummyWandb.log to record them; the loss run replaces the rollouts and rewards by
    scripted ones, the loop run the reward by float(len(response) % 2) (see phase_rl and rl.json's notes).

Fixture formats (the contract the Rust tests read; JSON files are UTF-8, ints are ints, floats are
Python repr (round-trip exact)):
  tokenizer.ranks       lines "base64(token bytes) rank" (standard base64, padded), ranks 0..n-1 in
                        order; the 9 special tokens are not in it, they are ids n..n+8 in nanochat's order
                        (<|bos|>, <|user_start|>, <|user_end|>, <|assistant_start|>, <|assistant_end|>,
                        <|python_start|>, <|python_end|>, <|output_start|>, <|output_end|>).
  tokenizer.pkl         the tiktoken Encoding as the reference pickles it (tokenizer/tokenizer.pkl).
  tokenizer_meta.json   {"vocab_size", "num_ranks", "pattern", "special_tokens": {name: id},
                        "tok_train_args", "docs": {"recipe", "count", "sha256"}, "token_bytes": [...],
                        "encode": [{"text", "ids"}], "notes"}. docs.sha256 = sha256 over every document's
                        UTF-8 bytes each followed by one 0x00 byte, in order, before tok_train's doc_cap crop.
  render.json           {"max_tokens": 2048, "cases": [{"name", "conversation", "ids", "mask",
                        "completion_ids"}]}; completion_ids is null where render_for_completion raises.
  tasks.json            {"standins", "notes", "tasks": [{"task", "args", "len", "examples": [{"index",
                        "conversation"}]}]}; args are the constructor kwargs; CustomJSON's filepath is
                        given relative to the stand-in directory.
  evaluate.json         {"cases": [{"task", "args", "index", "response", "result"}], "extract": [{"text",
                        "answer"}]}; result is what evaluate() returns (GSM8K/SpellingBee: int 0/1,
                        MMLU/ARC: bool); answer is tasks.gsm8k.extract_answer (null for None).
  mixtures.json         {"mid_train"|"mid_val"|"sft_train": {"tasks": [{"task", "args"}], "len",
                        "index_map_head": [[task_position, local_index] x 300], "first_examples": [5]},
                        "sft_val": {"task", "args", "len", "first_examples"}}
  train_steps.json      {"mid": {...}, "sft": {...}} with, per stage: "argv" (the exact overrides),
                        "overrides", "grad_accum_steps", "micro_batch_losses" [[loss per micro-batch] per
                        optimizer step] (raw value returned by GPT.forward in training mode), "lrm" [per
                        step], "muon_momentum" [per step], "num_tokens" (SFT) [per step], "first_inputs",
                        "first_targets" (first micro-batch, lists of rows), "evals" (mid: val_bpb at
                        each eval step; sft: val_loss and categorical metrics), "final_param_norms"
                        {name: float64 Frobenius norm of the fp32 tensor}, "final_params_sha256" (sha256 of
                        the fp32 little-endian bytes of every state_dict tensor, names sorted),
                        "checkpoint": {"step", "meta"}, "notes".
  rl.json               {"loss": {...}, "loop": {...}}: scripts/chat_rl.py from base_d2 (source=base, CPU fp32).
                        "loss": one step on scripted rollouts and rewards: "argv", "generations" [{"prefix_length",
                        "results", "masks"} per generate_batch call, two per example], "examples" [{"step",
                        "sequences", "inputs", "targets", "rewards", "advantages"} as the script built them],
                        "step" {"lrm", "mean_reward", "mean_sequence_length", "pass_losses" [every loss.backward()
                        value in order], "grad_norms" {name: float64 norm of .grad before the update},
                        "param_norms" {name: norm after it}, "params_sha256"}. "loop": three whole steps with the
                        engine's rollouts and the stand-in reward float(len(response) % 2): "steps" [as "step"
                        above, per step], "passk" [{"step", "pass@1", "pass@2"}], "evals" [{"step", "idx",
                        "settings", "results", "masks"}], "generations" [step 0's generate_batch calls: {"step",
                        "example_idx", "sampling_step", "seed", "prefix_length", "results", "masks"}], "seeds"
                        [[step, example_idx, sampling_step, seed] of every call], "checkpoints" [meta files].
  chat_eval.json        {"runs": [{"task", "settings" (run_chat_eval's kwargs), "accuracy", "calls": [{"response",
                        "result"}]}]}: the reference's chat evaluation on base_d2, every evaluate() call recorded.
  base_d2/model_000000.pt, base_d2/meta_000000.json   the starting weights (reference checkpoint
                        format), made with the reference's GPT: torch.manual_seed(42), meta-device
                        construction, to_empty(cpu), init_weights().
"""

import argparse
import base64
import copy
import glob
import hashlib
import json
import os
import runpy
import shutil
import sys
import types

STANDINS_DEFAULT = "manifests/data/chat_smoke"
NOTES_COMMON = [
    "Made by running the reference nanochat at 10231df on CPU (fp32) with torch 2.11.0; see make_chat_golden.py.",
    "datasets.load_dataset(repo, config, split) was routed to the stand-in parquet files of manifests/data/chat_smoke "
    "(datasets 5.2.0 'parquet' builder); the reference's own .shuffle(seed=42) ran for real.",
]

# -----------------------------------------------------------------------------------------------
# JSON output: pretty, but lists without dicts inside stay on one line


def _has_dict(o):
    if isinstance(o, dict):
        return True
    if isinstance(o, (list, tuple)):
        return any(_has_dict(x) for x in o)
    return False


def _enc(o, ind):
    pad, pad1 = " " * ind, " " * (ind + 1)
    if isinstance(o, dict):
        if not o:
            return "{}"
        items = [f"{pad1}{json.dumps(str(k), ensure_ascii=False)}: {_enc(v, ind + 1)}" for k, v in o.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(o, (list, tuple)):
        if not _has_dict(o):
            return json.dumps(list(o), ensure_ascii=False)
        return "[\n" + ",\n".join(pad1 + _enc(x, ind + 1) for x in o) + "\n" + pad + "]"
    return json.dumps(o, ensure_ascii=False)


def write_json(path, obj):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(_enc(obj, 0) + "\n")
    print(f"wrote {path} ({os.path.getsize(path):,} bytes)")


def plain(o):
    """Conversation objects -> JSON-able (tuples become lists)."""
    if isinstance(o, dict):
        return {k: plain(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [plain(x) for x in o]
    return o


# -----------------------------------------------------------------------------------------------
# environment set-up: must run before anything from the reference is imported


class Env:
    def __init__(self, nanochat, standins, scratch):
        self.nanochat = os.path.abspath(nanochat)
        self.standins = os.path.abspath(standins)
        self.scratch = os.path.abspath(scratch)
        if os.path.exists(self.scratch):
            shutil.rmtree(self.scratch)
        self.base = os.path.join(self.scratch, "base")
        os.makedirs(self.base)
        os.environ["NANOCHAT_BASE_DIR"] = self.base
        os.environ["HF_DATASETS_CACHE"] = os.path.join(self.scratch, "hf_datasets")
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["HF_DATASETS_OFFLINE"] = "1"
        os.environ.setdefault("OMP_NUM_THREADS", "1")  # fixed thread count: reproducible CPU reductions
        for name in ("identity_conversations.jsonl", "words_alpha.txt"):
            shutil.copyfile(os.path.join(self.standins, name), os.path.join(self.base, name))
        sys.path.insert(0, self.nanochat)
        os.chdir(self.nanochat)  # the scripts exec 'nanochat/configurator.py' by relative path

        import torch
        torch.set_num_threads(1)
        self.torch = torch

        def compile_identity(model=None, **kwargs):
            if model is None:
                return lambda f: f
            return model
        torch.compile = compile_identity

        wandb = types.ModuleType("wandb")
        def _no_wandb(*a, **k):
            raise RuntimeError("wandb is stubbed out in make_chat_golden.py")
        wandb.init = _no_wandb
        sys.modules["wandb"] = wandb

        import datasets
        real_load = datasets.load_dataset
        standins = self.standins
        self.loaded = []

        def load_dataset(path, name=None, split=None, **kwargs):
            layout = {
                "HuggingFaceTB/smol-smoltalk": "data/{split}-*.parquet",
                "cais/mmlu": "{name}/{split}-*.parquet",
                "allenai/ai2_arc": "{name}/{split}-*.parquet",
                "openai/gsm8k": "{name}/{split}-*.parquet",
                "openai/openai_humaneval": "openai_humaneval/{split}-*.parquet",
            }
            if path not in layout or kwargs:
                raise RuntimeError(f"unexpected load_dataset({path!r}, {name!r}, split={split!r}, {kwargs})")
            pattern = os.path.join(standins, path, layout[path].format(name=name, split=split))
            files = sorted(glob.glob(pattern))
            if not files:
                raise FileNotFoundError(pattern)
            self.loaded.append((path, name, split, [os.path.relpath(f, standins) for f in files]))
            return real_load("parquet", data_files={split: files}, split=split)
        datasets.load_dataset = load_dataset


# -----------------------------------------------------------------------------------------------
# (a) tokenizer


def tokenizer_docs(standins):
    """The documents the tokenizer is trained on, in order (recorded in tokenizer_meta.json)."""
    import pyarrow.parquet as pq
    docs = []
    for f in sorted(glob.glob(os.path.join(standins, "HuggingFaceTB/smol-smoltalk/data/train-*.parquet"))):
        for row in pq.read_table(f).to_pylist():
            docs.extend(m["content"] for m in row["messages"])
    for row in pq.read_table(os.path.join(standins, "openai/gsm8k/main/train-00000-of-00001.parquet")).to_pylist():
        docs.extend([row["question"], row["answer"]])
    for row in pq.read_table(os.path.join(standins, "openai/openai_humaneval/openai_humaneval/test-00000-of-00001.parquet")).to_pylist():
        docs.extend([row["prompt"], row["canonical_solution"]])
    return docs


DOCS_RECIPE = ("smol-smoltalk data/train-0000{0..3}-of-00004.parquet in file order, each row in order, each "
               "message's content in order; then gsm8k main/train rows in order: question, answer; then "
               "openai_humaneval test rows in order: prompt, canonical_solution. tok_train.py then crops each "
               "document to doc_cap characters (Python str slicing: code points).")

ENCODE_SAMPLES = [
    "Hello world! This is a test.",
    "Numbers: 123, 4567, 89 and 3.14159; -42; 1,000,000",
    "Contractions: I'm, you're, it's, we'll, they've, he'd, DON'T",
    "Unicode: 你好世界 🌍 café naïve e\u0301 👨‍👩‍👧",
    "    indented code():\n\treturn x  \n\n\n",
    "<|bos|> is plain text here, not a special token",
    "",
]


def phase_tok(env, out):
    import nanochat.dataset
    docs = tokenizer_docs(env.standins)
    h = hashlib.sha256()
    for d in docs:
        h.update(d.encode("utf-8") + b"\x00")

    def parquets_iter_batched(split, start=0, step=1):
        assert split == "train"
        for i in range(0, len(docs), 1024):
            yield docs[i:i + 1024]
    nanochat.dataset.parquets_iter_batched = parquets_iter_batched
    argv = ["scripts/tok_train.py", "--vocab_size=2048"]
    sys.argv = argv
    runpy.run_path("scripts/tok_train.py", run_name="__main__")

    from nanochat.tokenizer import get_tokenizer, SPECIAL_TOKENS, SPLIT_PATTERN
    tok = get_tokenizer()
    enc = tok.enc
    ranks = sorted(enc._mergeable_ranks.items(), key=lambda kv: kv[1])
    assert [r for _, r in ranks] == list(range(len(ranks)))
    with open(os.path.join(out, "tokenizer.ranks"), "w", encoding="ascii", newline="\n") as f:
        for b, r in ranks:
            f.write(f"{base64.b64encode(b).decode('ascii')} {r}\n")
    shutil.copyfile(os.path.join(env.base, "tokenizer", "tokenizer.pkl"), os.path.join(out, "tokenizer.pkl"))
    token_bytes = env.torch.load(os.path.join(env.base, "tokenizer", "token_bytes.pt")).tolist()
    meta = {
        "vocab_size": tok.get_vocab_size(),
        "num_ranks": len(ranks),
        "pattern": SPLIT_PATTERN,
        "special_tokens": {name: tok.encode_special(name) for name in SPECIAL_TOKENS},
        "tok_train_args": {"argv": argv[1:], "vocab_size": 2048, "doc_cap": 10000, "max_chars": 10000000000},
        "docs": {"recipe": DOCS_RECIPE, "count": len(docs), "sha256": h.hexdigest(),
                 "count_longer_than_doc_cap": sum(len(d) > 10000 for d in docs)},
        "token_bytes": token_bytes,
        "encode": [{"text": t, "ids": tok.encode(t)} for t in ENCODE_SAMPLES],
        "notes": NOTES_COMMON + [
            "Trained by running scripts/tok_train.py --vocab_size=2048 (defaults doc_cap=10000, max_chars=1e10) "
            "with nanochat.dataset.parquets_iter_batched yielding the documents above in batches of 1024.",
            "token_bytes is tokenizer/token_bytes.pt as tok_train.py writes it; encode[] is RustBPETokenizer.encode "
            "(tiktoken encode_ordinary: special-token text is plain text).",
        ],
    }
    write_json(os.path.join(out, "tokenizer_meta.json"), meta)


# -----------------------------------------------------------------------------------------------
# (b) render


def render_cases(tok):
    from tasks.gsm8k import GSM8K
    from tasks.spellingbee import SpellingBee, SimpleSpelling
    from tasks.smoltalk import SmolTalk
    from tasks.mmlu import MMLU
    from tasks.arc import ARC
    from tasks.humaneval import HumanEval
    from tasks.customjson import CustomJSON

    def conv(*msgs):
        return {"messages": [{"role": r, "content": c} for r, c in msgs]}

    def parts(*ps):
        return [{"type": t, "text": x} for t, x in ps]

    long_user = " ".join(f"Paragraph {i}: the quick brown fox jumps over the lazy dog, {i * 7} times; 日本語 {i}."
                         for i in range(260))
    cases = [
        ("plain_string", conv(("user", "Hello!"), ("assistant", "Hi there, how can I help you today?"))),
        ("system_merge", conv(("system", "You are a helpful assistant."), ("user", "What is 2+2?"),
                              ("assistant", "2+2 = 4."))),
        ("system_merge_multi_turn", conv(("system", "Be terse."), ("user", "Hi"), ("assistant", "Hello."),
                                         ("user", "Bye"), ("assistant", "Bye."))),
        ("parts_text_python_output", conv(("user", "What is 12*7?"), ("assistant", parts(
            ("text", "Let me compute that. "), ("python", "12*7"), ("python_output", "84"),
            ("text", " So the answer is 84.\n#### 84"))))),
        ("parts_python_first", conv(("user", "Count the r in strawberry"), ("assistant", parts(
            ("python", "'strawberry'.count('r')"), ("python_output", "3"), ("text", "There are 3."))))),
        ("parts_output_first_and_repeated", conv(("user", "weird order"), ("assistant", parts(
            ("python_output", "stale"), ("python_output", ""), ("python", ""), ("text", ""),
            ("python", "1/3"), ("python_output", "0.3333333333333333"), ("text", "done"))))),
        ("parts_only_text", conv(("user", "x"), ("assistant", parts(("text", "a"), ("text", "b"), ("text", " c"))))),
        ("parts_empty_list", conv(("user", "say nothing"), ("assistant", []))),
        ("multi_turn_mixed", conv(("user", "Hi"), ("assistant", "Hello!"), ("user", "Add 2,000 and 35"),
                                  ("assistant", parts(("text", "Sure: "), ("python", "2000+35"), ("python_output", "2035"),
                                                      ("text", "2,035."))),
                                  ("user", "Thanks"), ("assistant", "You're welcome."))),
        ("unicode", conv(("user", "Translate: 你好，世界! Привет 👋🏽 e\u0301 مرحبا"),
                         ("assistant", "Hello, world! 🌍 — «Bonjour» 日本語 한국어 👨‍👩‍👧 \u00a0∑√∞"))),
        ("whitespace", conv(("user", "  leading and trailing  \n\n\n\tTabs\r\nCRLF  "),
                            ("assistant", "\n\nline1\n   line2    \n\n"))),
        ("special_token_text", conv(("user", "What does <|bos|> or <|assistant_end|> mean?"),
                                    ("assistant", "<|python_start|>print(1)<|python_end|> is just text here."))),
        ("empty_assistant", conv(("user", "Reply with nothing."), ("assistant", ""))),
        ("empty_user", conv(("user", ""), ("assistant", "You sent an empty message."))),
        ("ends_with_user", conv(("user", "First"), ("assistant", "Reply"), ("user", "Second"))),
        ("only_user", conv(("user", "Just me."))),
        ("long_truncated", conv(("user", long_user), ("assistant", "Short answer."))),
        ("long_truncated_multi_turn", conv(("user", long_user), ("assistant", "Noted."), ("user", "And again?"),
                                           ("assistant", parts(("text", "Again: "), ("python", "2**10"), ("python_output", "1024"))))),
    ]
    tasks = [
        ("gsm8k_train_0", GSM8K(subset="main", split="train")[0]),
        ("gsm8k_train_3", GSM8K(subset="main", split="train")[3]),
        ("gsm8k_test_7", GSM8K(subset="main", split="test")[7]),
        ("spellingbee_train_0", SpellingBee(size=1000, split="train")[0]),
        ("spellingbee_train_17", SpellingBee(size=1000, split="train")[17]),
        ("spellingbee_test_5", SpellingBee(size=1000, split="test")[5]),
        ("simplespelling_train_2", SimpleSpelling(size=1000, split="train")[2]),
        ("mmlu_test_0", MMLU(subset="all", split="test")[0]),
        ("mmlu_aux_1", MMLU(subset="auxiliary_train", split="train")[1]),
        ("arc_easy_train_0", ARC(subset="ARC-Easy", split="train")[0]),
        ("humaneval_0", HumanEval()[0]),
        ("identity_0", CustomJSON(filepath=os.path.join(os.environ["NANOCHAT_BASE_DIR"], "identity_conversations.jsonl"))[0]),
    ]
    st = SmolTalk(split="train")
    long_idx = None
    for i in range(len(st)):
        ids, _ = tok.render_conversation(st[i], max_tokens=10 ** 9)
        if len(ids) > 2048:
            long_idx = i
            break
    sys_idx = next(i for i in range(len(st)) if st[i]["messages"][0]["role"] == "system")
    tasks += [(f"smoltalk_train_{sys_idx}_system", st[sys_idx]), (f"smoltalk_train_{long_idx}_long", st[long_idx])]
    return cases + tasks


def phase_render(env, out):
    from nanochat.tokenizer import get_tokenizer
    tok = get_tokenizer()
    rendered = []
    for name, c in render_cases(tok):
        c = plain(c)
        before = json.dumps(c)
        ids, mask = tok.render_conversation(c)
        try:
            completion = tok.render_for_completion(c)
        except AssertionError:
            completion = None
        assert json.dumps(c) == before, "render mutated its input"
        rendered.append({"name": name, "conversation": c, "ids": ids, "mask": mask, "completion_ids": completion})
    write_json(os.path.join(out, "render.json"), {
        "max_tokens": 2048,
        "notes": NOTES_COMMON + [
            "ids/mask: RustBPETokenizer.render_conversation(conversation) (default max_tokens=2048); completion_ids: "
            "render_for_completion(conversation), null where it raises (last message not from the assistant).",
            "render_for_completion truncates the rest of the conversation to 2048 and then appends <|assistant_start|>, "
            "so it can return 2049 ids (case long_truncated_multi_turn).",
            "Task conversations (names gsm8k_*, spellingbee_*, ...) are task[index] of the reference tasks over the stand-ins.",
        ],
        "cases": rendered,
    })


# -----------------------------------------------------------------------------------------------
# (c) tasks, (d) evaluate


def task_specs(base):
    ident = os.path.join(base, "identity_conversations.jsonl")
    bee_idx = [0, 1, 2, 3, 4, 17, 99, 12345, 99999]
    spell_idx = [0, 1, 2, 3, 4, 17, 99, 12345, 99999]
    specs = [
        ("SmolTalk", {"split": "train"}, None),
        ("SmolTalk", {"split": "test"}, None),
        ("SmolTalk", {"split": "train", "stop": 10000}, None),
        ("MMLU", {"subset": "all", "split": "test"}, None),
        ("MMLU", {"subset": "all", "split": "validation"}, None),
        ("MMLU", {"subset": "all", "split": "dev"}, None),
        ("MMLU", {"subset": "auxiliary_train", "split": "train"}, None),
        ("MMLU", {"subset": "all", "split": "test", "stop": 50}, None),
        ("MMLU", {"subset": "all", "split": "test", "stop": 5200}, None),
    ]
    for subset in ("ARC-Easy", "ARC-Challenge"):
        for split in ("train", "validation", "test"):
            specs.append(("ARC", {"subset": subset, "split": split}, None))
    specs += [
        ("GSM8K", {"subset": "main", "split": "train"}, None),
        ("GSM8K", {"subset": "main", "split": "test"}, None),
        ("GSM8K", {"subset": "main", "split": "test", "start": 5, "stop": 40, "step": 3}, None),
        ("GSM8K", {"subset": "main", "split": "test", "stop": 420}, None),
        ("HumanEval", {}, None),
        ("CustomJSON", {"filepath": ident}, None),
        ("SpellingBee", {"size": 100000, "split": "train"}, bee_idx),
        ("SpellingBee", {"size": 100000, "split": "test"}, bee_idx),
        ("SpellingBee", {"size": 300, "split": "train", "start": 10, "step": 7}, [0, 1, 2, 42]),
        ("SimpleSpelling", {"size": 100000, "split": "train"}, spell_idx),
        ("SimpleSpelling", {"size": 100000, "split": "test"}, spell_idx),
    ]
    return specs


def make_task(name, args):
    from tasks.smoltalk import SmolTalk
    from tasks.mmlu import MMLU
    from tasks.arc import ARC
    from tasks.gsm8k import GSM8K
    from tasks.humaneval import HumanEval
    from tasks.customjson import CustomJSON
    from tasks.spellingbee import SpellingBee, SimpleSpelling
    cls = {"SmolTalk": SmolTalk, "MMLU": MMLU, "ARC": ARC, "GSM8K": GSM8K, "HumanEval": HumanEval,
           "CustomJSON": CustomJSON, "SpellingBee": SpellingBee, "SimpleSpelling": SimpleSpelling}[name]
    return cls(**args)


def public_args(env, args):
    """Task args as written to the fixtures: the identity file relative to the stand-in directory."""
    a = dict(args)
    if "filepath" in a:
        a["filepath"] = os.path.relpath(a["filepath"], env.base)
    return a


def phase_tasks(env, out):
    entries = []
    for name, args, idx in task_specs(env.base):
        t = make_task(name, args)
        n = len(t)
        if idx is None:
            idx = sorted(set([i for i in range(5) if i < n] + [i for i in (17, 99, n // 2, n - 1) if 0 <= i < n]))
        entries.append({"task": name, "args": public_args(env, args), "len": n,
                        "examples": [{"index": i, "conversation": plain(t[i])} for i in idx]})
    write_json(os.path.join(out, "tasks.json"), {
        "standins": STANDINS_DEFAULT,
        "notes": NOTES_COMMON + [
            "conversation = task[index] (Task.__getitem__: physical index start + index*step), all fields. MMLU's "
            "letters is a tuple in Python, written as a list.",
            "CustomJSON.filepath is relative to the stand-in directory (the reference got an absolute path).",
            "SpellingBee/SimpleSpelling read words_alpha.txt (CRLF line endings, stripped per line by the reference).",
        ],
        "tasks": entries,
    })


EXTRACT_TEXTS = [
    "#### 42", "The answer is\n#### 1,234", "#### -7", "#### 3.50", "#### 0.5.", "####42", "#### $12",
    "#### 12 apples", "no marker here", "#### 1,000,000 and then #### 5", "##### 8", "#### ,", "#### -",
    "#### 1e5", "####  9", "text\n#### 72\n", "#### −3 (unicode minus)", "#### ١٢ (arabic-indic digits)",
    "Python gives us 3.\n\nMy final answer is:\n\n#### 3", "#### 10.", "#### .5", "#### 007",
]


def phase_eval(env, out):
    from tasks.gsm8k import extract_answer
    cases = []

    def add(name, args, index, responses):
        t = make_task(name, args)
        c = t[index]
        for r in responses:
            cases.append({"task": name, "args": public_args(env, args), "index": index, "response": r,
                          "result": t.evaluate(c, r)})

    g_args = {"subset": "main", "split": "test"}
    g = make_task("GSM8K", g_args)
    for i in (0, 1, 2):
        ref = g[i]["messages"][-1]["content"][-1]["text"].split("#### ")[-1]
        num = ref.replace(",", "")
        add("GSM8K", g_args, i, [f"So it is {ref}.\n#### {ref}", f"#### {num}",
                                 f"#### {int(num.split('.')[0]) + 1 if num.lstrip('-').split('.')[0].isdigit() else 1}",
                                 f"The answer is {num}.", "", f"#### {ref} \n#### 999", f"####{num}",
                                 f"#### {num}.0"])
    # a test row whose answer has a thousands separator, if any
    for i in range(len(g)):
        if "," in g[i]["messages"][-1]["content"][-1]["text"].split("#### ")[-1]:
            ref = g[i]["messages"][-1]["content"][-1]["text"].split("#### ")[-1]
            add("GSM8K", g_args, i, [f"#### {ref}", f"#### {ref.replace(',', '')}", f"#### {ref.replace(',', '.')}"])
            break
    for i in range(len(g)):
        if "#### -" in g[i]["messages"][-1]["content"][-1]["text"]:
            ref = g[i]["messages"][-1]["content"][-1]["text"].split("#### ")[-1]
            add("GSM8K", g_args, i, [f"#### {ref}", f"#### {ref.lstrip('-')}"])
            break
    b_args = {"size": 256, "split": "test"}
    b = make_task("SpellingBee", b_args)
    for i in (0, 1, 5):
        cnt = b[i]["messages"][-1]["content"][3]["text"]
        add("SpellingBee", b_args, i, [f"My final answer is:\n\n#### {cnt}", f"#### {int(cnt) + 1}", cnt, f"#### {cnt},",
                                      f"#### {cnt}.0"])
    m_args = {"subset": "all", "split": "test"}
    for i in (0, 1):
        add("MMLU", m_args, i, ["A", "B", "C", "D"])
    for subset in ("ARC-Easy", "ARC-Challenge"):
        a_args = {"subset": subset, "split": "test"}
        a = make_task("ARC", a_args)
        picked = []
        for i in range(len(a)):
            letters = a[i]["letters"]
            kind = (len(letters), letters[0])
            if kind not in [k for k, _ in picked]:
                picked.append((kind, i))
        for _, i in picked:
            add("ARC", a_args, i, list(a[i]["letters"]))
    write_json(os.path.join(out, "evaluate.json"), {
        "notes": NOTES_COMMON + [
            "result = task.evaluate(task[index], response): GSM8K/SpellingBee return int 0/1, MMLU/ARC return bool "
            "(both assert the response is one of the letters).",
            "extract[].answer = tasks.gsm8k.extract_answer(text) (regex '#### (\\-?[0-9\\.\\,]+)', first match, "
            "commas removed); null where it returns None.",
        ],
        "cases": cases,
        "extract": [{"text": t, "answer": extract_answer(t)} for t in EXTRACT_TEXTS],
    })


# -----------------------------------------------------------------------------------------------
# (e) mixtures


def mixture_specs(base):
    ident = os.path.join(base, "identity_conversations.jsonl")
    return {
        "mid_train": [("SmolTalk", {"split": "train"}), ("MMLU", {"subset": "auxiliary_train", "split": "train"}),
                      ("GSM8K", {"subset": "main", "split": "train"}), ("CustomJSON", {"filepath": ident}),
                      ("CustomJSON", {"filepath": ident}), ("SimpleSpelling", {"size": 200000, "split": "train"}),
                      ("SpellingBee", {"size": 80000, "split": "train"})],
        "mid_val": [("SmolTalk", {"split": "test"}), ("MMLU", {"subset": "all", "split": "test", "stop": 5200}),
                    ("GSM8K", {"subset": "main", "split": "test", "stop": 420})],
        "sft_train": [("ARC", {"subset": "ARC-Easy", "split": "train"}), ("ARC", {"subset": "ARC-Challenge", "split": "train"}),
                      ("GSM8K", {"subset": "main", "split": "train"}), ("SmolTalk", {"split": "train", "stop": 10000}),
                      ("CustomJSON", {"filepath": ident}), ("SimpleSpelling", {"size": 300, "split": "train"}),
                      ("SpellingBee", {"size": 300, "split": "train"})],
    }


def phase_mix(env, out):
    from tasks.common import TaskMixture
    res = {}
    for key, spec in mixture_specs(env.base).items():
        mix = TaskMixture([make_task(n, a) for n, a in spec])
        res[key] = {"tasks": [{"task": n, "args": public_args(env, a)} for n, a in spec], "len": len(mix),
                    "index_map_head": [list(p) for p in mix.index_map[:300]],
                    "first_examples": [plain(mix[i]) for i in range(5)]}
    val = make_task("SmolTalk", {"split": "test"})
    res["sft_val"] = {"task": "SmolTalk", "args": {"split": "test"}, "len": len(val),
                      "first_examples": [plain(val[i]) for i in range(5)]}
    res["notes"] = NOTES_COMMON + [
        "Task lists and args are those of scripts/mid_train.py (train_dataset, val_dataset) and scripts/chat_sft.py "
        "(train_ds, val_ds) at 10231df; TaskMixture shuffles the (task_position, local_index) list with random.Random(42).",
    ]
    write_json(os.path.join(out, "mixtures.json"), res)


# -----------------------------------------------------------------------------------------------
# (f) training steps


def params_digest(torch, sd):
    h = hashlib.sha256()
    norms = {}
    for k in sorted(sd):
        t = sd[k].detach().to(torch.float32).contiguous().cpu()
        h.update(t.numpy().tobytes())
        norms[k] = float(torch.linalg.vector_norm(t.to(torch.float64)).item())
    return h.hexdigest(), norms


class Recorder:
    """Wraps GPT.forward, the Muon step and evaluate_bpb to record what the scripts compute."""

    def __init__(self, torch, script):
        self.torch, self.script = torch, script
        self.micro, self.steps, self.lrm, self.mom, self.ntok, self.evals = [], [], [], [], [], []
        self.eval_losses = []
        self.first = None

    def script_globals(self):
        f = sys._getframe(1)
        while f is not None:
            if f.f_globals.get("__file__", "").endswith(self.script):
                return f.f_globals
            f = f.f_back
        raise RuntimeError("script frame not found")

    def install(self):
        import nanochat.gpt as gpt
        import nanochat.muon as muon
        import nanochat.loss_eval as loss_eval
        rec = self
        orig_forward, orig_step, orig_bpb = gpt.GPT.forward, muon.Muon.step, loss_eval.evaluate_bpb

        def forward(model, idx, targets=None, kv_cache=None, loss_reduction="mean"):
            out = orig_forward(model, idx, targets=targets, kv_cache=kv_cache, loss_reduction=loss_reduction)
            if model.training and targets is not None and loss_reduction == "mean":
                if rec.first is None:
                    rec.first = (idx.tolist(), targets.tolist())
                rec.micro.append(float(out.detach().item()))
            elif targets is not None and loss_reduction == "mean":  # chat_sft.py's val loss batches
                rec.eval_losses.append({"step": rec.script_globals()["step"], "loss": float(out.detach().item())})
            return out

        def step(opt, *a, **k):
            g = rec.script_globals()
            rec.steps.append(rec.micro)
            rec.micro = []
            rec.lrm.append(g["lrm"])
            rec.mom.append(opt.param_groups[0]["momentum"])
            if "num_tokens" in g:
                rec.ntok.append(int(g["num_tokens"].item()))
            return orig_step(opt, *a, **k)

        def evaluate_bpb(*a, **k):
            v = orig_bpb(*a, **k)
            rec.evals.append({"step": rec.script_globals()["step"], "val_bpb": v})
            return v
        gpt.GPT.forward, muon.Muon.step, loss_eval.evaluate_bpb = forward, step, evaluate_bpb
        self.restore = lambda: (setattr(gpt.GPT, "forward", orig_forward), setattr(muon.Muon, "step", orig_step),
                                setattr(loss_eval, "evaluate_bpb", orig_bpb))


def make_base_checkpoint(env, out):
    torch = env.torch
    from nanochat.gpt import GPT, GPTConfig
    from nanochat.checkpoint_manager import save_checkpoint
    from nanochat.tokenizer import get_tokenizer
    vocab = get_tokenizer().get_vocab_size()
    depth = 2
    model_dim = depth * 64
    n_head = max(1, (model_dim + 127) // 128)
    cfg = dict(sequence_len=64, vocab_size=vocab, n_layer=depth, n_head=n_head, n_kv_head=n_head, n_embd=model_dim)
    torch.manual_seed(42)
    with torch.device("meta"):
        model = GPT(GPTConfig(**cfg))
    model.to_empty(device="cpu")
    model.init_weights()
    # init_weights zeroes lm_head and every c_proj (§3.4): the first step's loss would be exactly ln(vocab) and its
    # gradients mostly zero. Give them small seeded values so the golden steps exercise every parameter.
    gen = torch.Generator().manual_seed(43)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "lm_head.weight" or name.endswith("c_proj.weight"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
    meta = {"step": 0, "val_bpb": None, "model_config": cfg, "user_config": {"depth": depth},
            "device_batch_size": 2, "max_seq_len": 64}
    ckdir = os.path.join(env.base, "base_checkpoints", "d2")
    save_checkpoint(ckdir, 0, model.state_dict(), None, meta)
    dst = os.path.join(out, "base_d2")
    os.makedirs(dst, exist_ok=True)
    for f in ("model_000000.pt", "meta_000000.json"):
        shutil.copyfile(os.path.join(ckdir, f), os.path.join(dst, f))
    digest, norms = params_digest(torch, model.state_dict())
    return {"model_config": cfg, "params_sha256": digest, "param_norms": norms,
            "init": "torch.manual_seed(42); GPT(GPTConfig(**model_config)) on the meta device; to_empty(device='cpu'); "
                    "init_weights(); then lm_head.weight and every c_proj.weight = randn(shape, generator=Generator().manual_seed(43)) * 0.02 "
                    "in named_parameters order  (reference nanochat/gpt.py; sizing as scripts/base_train.py for depth=2)"}


def run_stage(env, script, argv, ckpt_subdir):
    torch = env.torch
    rec = Recorder(torch, script)
    rec.install()
    sys.argv = [script] + argv
    try:
        g = runpy.run_path(script, run_name="__main__")
    finally:
        rec.restore()
    assert rec.micro == [], "micro-batches after the last optimizer step"
    ckdir = os.path.join(env.base, ckpt_subdir, "d2")
    metas = sorted(glob.glob(os.path.join(ckdir, "meta_*.json")))
    meta = json.load(open(metas[-1]))
    step = int(os.path.basename(metas[-1])[5:11])
    sd = torch.load(os.path.join(ckdir, f"model_{step:06d}.pt"), map_location="cpu")
    digest, norms = params_digest(torch, sd)
    overrides = {a[2:].split("=")[0]: g[a[2:].split("=")[0]] for a in argv}
    res = {"argv": argv, "overrides": overrides, "grad_accum_steps": g["grad_accum_steps"],
           "micro_batch_losses": rec.steps, "lrm": rec.lrm, "muon_momentum": rec.mom}
    if rec.ntok:
        res["num_tokens"] = rec.ntok
    res.update({"first_inputs": rec.first[0], "first_targets": rec.first[1]})
    return res, rec, g, {"step": step, "meta": meta}, digest, norms


def phase_train(env, out):
    base = make_base_checkpoint(env, out)
    mid_argv = ["--device_type=cpu", "--device_batch_size=2", "--max_seq_len=64",
                "--total_batch_size=128", "--num_iterations=6", "--eval_every=2", "--eval_tokens=128"]
    mid, rec, g, ck, digest, norms = run_stage(env, "scripts/mid_train.py", mid_argv, "mid_checkpoints")
    mid.update({"evals": rec.evals, "min_val_bpb": g["min_val_bpb"], "final_param_norms": norms,
                "final_params_sha256": digest, "checkpoint": ck})
    mid["notes"] = NOTES_COMMON + [
        "python -m scripts.mid_train equivalent: runpy of scripts/mid_train.py with argv above; torch.compile replaced by "
        "identity (eager mode; also inside Muon's Newton-Schulz); wandb stubbed.",
        "total_batch_size = device_batch_size x max_seq_len: grad accumulation 1, so one process here reads the same "
        "batches as rank 0 of any layout (no choice between consecutive micro-batches and per-rank streams).",
        "num_iterations counts loader batches (micro-batches), not optimizer steps: the loader sets last_step once it "
        "has yielded num_iterations batches, counting the prefetch, and progress = it/num_iterations. With "
        "num_iterations=6 and grad_accum 1 that is 5 optimizer steps with progress (s+2)/6 at step s.",
        "eval_every=2 and eval_tokens=128 (1 val batch) keep the evals tiny; they cannot be switched off without "
        "val_bpb being undefined at the final save.",
        "micro_batch_losses are the raw per-micro-batch losses (before the 1/grad_accum scaling); lrm and "
        "muon_momentum are the values the script set before each optimizer step.",
    ]
    sft_argv = ["--device_type=cpu", "--source=base", "--device_batch_size=2",
                "--target_examples_per_step=2", "--num_iterations=5", "--eval_every=100", "--eval_steps=1",
                "--eval_metrics_every=200", "--eval_metrics_max_problems=4"]
    sft, rec, g, ck, digest, norms = run_stage(env, "scripts/chat_sft.py", sft_argv, "chatsft_checkpoints")
    sft.update({"evals": {"val_batch_losses": rec.eval_losses, "val_loss": g["val_loss"], "metrics": g["metrics"]}, "final_param_norms": norms,
                "final_params_sha256": digest, "checkpoint": ck, "input_params_sha256": base["params_sha256"]})
    sft["notes"] = NOTES_COMMON + [
        "runpy of scripts/chat_sft.py with argv above, starting from the committed base checkpoint (source=base, "
        "input_params_sha256 = base.params_sha256), grad accumulation 1 (target_examples_per_step = device_batch_size).",
        "The loop breaks at step num_iterations-1 before stepping: num_iterations=5 gives 4 optimizer steps.",
        "Evaluation cannot be switched off: val loss (eval_steps=1 batch of SmolTalk test) runs at step 0 and at the "
        "last step (evals.val_batch_losses), MMLU and ARC-Easy categorical accuracy (max 4 problems, batch 4) at the "
        "last step (evals.metrics).",
        "num_tokens: targets >= 0 summed over the step's micro-batches (the script only logs it).",
    ]
    write_json(os.path.join(out, "train_steps.json"), {
        "base": base, "mid": mid, "sft": sft,
        "notes": ["torch.set_num_threads(1) and OMP_NUM_THREADS=1 for every run here (bit-reproducible CPU reductions); "
                  "compare against a single-threaded run, or with a tolerance.",
                  "Both runs start from base_d2/ (committed)."]})


def load_base_d2(env, out):
    """The committed d2 base weights in the reference's GPT, in eval mode on the CPU."""
    torch = env.torch
    from nanochat.gpt import GPT, GPTConfig
    meta = json.load(open(os.path.join(out, "base_d2", "meta_000000.json")))
    with torch.device("meta"):
        model = GPT(GPTConfig(**meta["model_config"]))
    model.to_empty(device="cpu")
    model.init_weights()
    model.load_state_dict(torch.load(os.path.join(out, "base_d2", "model_000000.pt"), map_location="cpu"), strict=True)
    model.eval()
    return model


def phase_engine(env, out):
    """engine.json: the reference's Engine.generate_batch on the committed d2 base weights (greedy and
    seeded sampling, with and without top-k, several samples), prompts rendered by its tokenizer."""
    torch = env.torch
    from nanochat.gpt import GPT, GPTConfig
    from nanochat.engine import Engine
    from nanochat.tokenizer import get_tokenizer
    tokenizer = get_tokenizer()
    model = load_base_d2(env, out)
    engine = Engine(model, tokenizer)
    conversation = {"messages": [{"role": "user", "content": "What is 12 divided by 60?"},
                                 {"role": "assistant", "content": "x"}]}
    prompts = {
        "text": tokenizer.encode("The capital of France is", prepend=tokenizer.get_bos_token_id()),
        "chat": tokenizer.render_for_completion(conversation),
    }
    settings = [
        {"name": "greedy", "num_samples": 1, "max_tokens": 24, "temperature": 0.0, "top_k": None, "seed": 42},
        {"name": "top_k", "num_samples": 4, "max_tokens": 16, "temperature": 1.0, "top_k": 50, "seed": 42},
        {"name": "all_logits", "num_samples": 2, "max_tokens": 12, "temperature": 0.7, "top_k": None, "seed": 7},
    ]
    cases = []
    for prompt_name, tokens in prompts.items():
        for s in settings:
            kwargs = {k: v for k, v in s.items() if k != "name"}
            results, masks = engine.generate_batch(list(tokens), **kwargs)
            cases.append({"prompt": prompt_name, "tokens": list(tokens), "settings": s,
                          "results": results, "masks": masks})
    write_json(os.path.join(out, "engine.json"), {
        "notes": NOTES_COMMON + ["Engine.generate_batch of nanochat/engine.py on base_d2 (CPU, fp32); sampling uses "
                                 "its torch.Generator(device='cpu').manual_seed(seed)."],
        "cases": cases})


def phase_chateval(env, out):
    """chat_eval.json: the reference's scripts/chat_eval.py run_chat_eval on the committed d2 base weights for
    the six tasks (a few problems each), with every evaluate() call recorded in order: the predicted letter of
    the categorical tasks, the decoded completion of the generative ones, and the result."""
    torch = env.torch
    from nanochat.gpt import GPT, GPTConfig
    from nanochat.engine import Engine
    from nanochat.tokenizer import get_tokenizer
    from tasks.mmlu import MMLU
    from tasks.arc import ARC
    from tasks.gsm8k import GSM8K
    from tasks.humaneval import HumanEval
    from tasks.spellingbee import SpellingBee
    tokenizer = get_tokenizer()
    model = load_base_d2(env, out)
    engine = Engine(model, tokenizer)
    sys.argv = ["chat_eval"]
    chat_eval = runpy.run_path(os.path.join(env.nanochat, "scripts", "chat_eval.py"), run_name="chat_eval_golden")
    calls = []
    originals = {}
    for cls in (MMLU, ARC, GSM8K, HumanEval, SpellingBee):
        originals[cls] = cls.evaluate

        def recording(self, conversation, response, _orig=cls.evaluate):
            result = _orig(self, conversation, response)
            calls.append({"response": response, "result": int(bool(result))})
            return result
        cls.evaluate = recording
    runs = []
    settings = [
        {"tasks": ["ARC-Easy", "ARC-Challenge", "MMLU", "GSM8K", "HumanEval", "SpellingBee"], "batch_size": 4,
         "num_samples": 1, "max_new_tokens": 24, "temperature": 0.0, "top_k": 50, "max_problems": 6},
        {"tasks": ["GSM8K", "SpellingBee"], "batch_size": 8, "num_samples": 2, "max_new_tokens": 16,
         "temperature": 1.0, "top_k": 20, "max_problems": 3},
    ]
    try:
        for s in settings:
            for task in s["tasks"]:
                calls.clear()
                with torch.no_grad():
                    acc = chat_eval["run_chat_eval"](task, model, tokenizer, engine, batch_size=s["batch_size"],
                                                     num_samples=s["num_samples"], max_new_tokens=s["max_new_tokens"],
                                                     temperature=s["temperature"], top_k=s["top_k"],
                                                     max_problems=s["max_problems"])
                runs.append({"task": task, "settings": {k: v for k, v in s.items() if k != "tasks"},
                             "accuracy": acc, "calls": list(calls)})
    finally:
        for cls, f in originals.items():
            cls.evaluate = f
    write_json(os.path.join(out, "chat_eval.json"), {
        "notes": NOTES_COMMON + ["scripts/chat_eval.py run_chat_eval (fp32, CPU) on base_d2 as if it were a chat "
                                 "model; calls = every task.evaluate(conversation, response) in call order (one "
                                 "per problem for the categorical tasks, one per sample for the generative ones)."],
        "runs": runs})


# -----------------------------------------------------------------------------------------------
# (h) chat RL: the policy-gradient step on fixed rollouts, then whole steps with the engine's rollouts


class StopRun(Exception):
    """Raised by the RL recorder to end chat_rl.py after the steps it needs."""


class RlRecorder:
    """Wraps what scripts/chat_rl.py calls to record it: GPT.forward (the passes' inputs and targets),
    torch.Tensor.backward (each pass's loss), Muon.step (gradient norms before the update, parameter norms
    after it, the step's logged values), Engine.generate_batch (seeds and rollouts, or scripted rollouts),
    GSM8K.reward (or a stand-in reward) and DummyWandb.log (pass@k)."""

    def __init__(self, torch, stop_after=None, scripted=None, reward=None, eval_max_tokens=None):
        self.torch, self.stop_after = torch, stop_after
        self.scripted, self.reward, self.eval_max_tokens = scripted, reward, eval_max_tokens
        self.passes, self.examples, self.steps, self.generations, self.evals, self.passk = [], [], [], [], [], []
        self.calls = 0

    @staticmethod
    def script_globals():
        f = sys._getframe(1)
        while f is not None:
            if f.f_globals.get("__file__", "").endswith("chat_rl.py"):
                return f.f_globals
            f = f.f_back
        raise RuntimeError("chat_rl.py frame not found")

    def install(self):
        import torch
        import nanochat.gpt as gpt
        import nanochat.muon as muon
        import nanochat.engine as engine
        import nanochat.common as common
        import tasks.gsm8k as gsm8k
        rec = self
        orig = dict(forward=gpt.GPT.forward, step=muon.Muon.step, generate=engine.Engine.generate_batch,
                    reward=gsm8k.GSM8K.reward, backward=torch.Tensor.backward, log=common.DummyWandb.log,
                    compute_init=common.compute_init)

        def forward(model, idx, targets=None, kv_cache=None, loss_reduction="mean"):
            out = orig["forward"](model, idx, targets=targets, kv_cache=kv_cache, loss_reduction=loss_reduction)
            if targets is not None and loss_reduction == "none":
                rec.passes.append({"inputs": idx.tolist(), "targets": targets.tolist()})
            return out

        def backward(t, *a, **k):
            g = rec.script_globals()
            rec.passes[-1]["loss"] = float(t.detach().item())
            if g["pass_idx"] == 0:
                rec.examples.append({"step": g["step"], "inputs": g["inputs_all"].tolist(),
                                     "targets": g["targets_all"].tolist(), "rewards": g["rewards_all"].tolist(),
                                     "advantages": g["advantages_all"].tolist(),
                                     "sequences": [list(s) for s in g["sequences_all"]]})
            return orig["backward"](t, *a, **k)

        def step(opt, *a, **k):
            g = rec.script_globals()
            model = g["model"]
            grads = {n: float(torch.linalg.vector_norm(p.grad.detach().double()).item())
                     for n, p in model.named_parameters()}
            r = orig["step"](opt, *a, **k)
            digest, norms = params_digest(torch, model.state_dict())
            rec.steps.append({"step": g["step"], "lrm": g["lrm"], "mean_reward": g["mean_reward"],
                              "mean_sequence_length": g["mean_sequence_length"], "grad_norms": grads,
                              "param_norms": norms, "params_sha256": digest,
                              "pass_losses": [p["loss"] for p in rec.passes]})
            rec.passes = []
            if rec.stop_after is not None and len(rec.steps) >= rec.stop_after:
                raise StopRun()
            return r

        def generate_batch(eng, tokens, num_samples=1, **kwargs):
            rec.calls += 1
            if rec.scripted is not None:
                results, masks = rec.scripted(list(tokens), num_samples)
                rec.generations.append({"prefix_length": len(tokens), "results": results, "masks": masks})
                return results, masks
            f = sys._getframe(1)
            if "seed" not in kwargs:  # run_gsm8k_eval: the script's 256 new tokens capped like the training rollouts
                kwargs["max_tokens"] = rec.eval_max_tokens
                results, masks = orig["generate"](eng, tokens, num_samples, **kwargs)
                rec.evals.append({"step": rec.script_globals()["step"], "idx": f.f_locals["idx"],
                                  "settings": dict(kwargs), "results": results, "masks": masks})
                return results, masks
            results, masks = orig["generate"](eng, tokens, num_samples, **kwargs)
            rec.generations.append({"step": rec.script_globals()["step"], "example_idx": f.f_locals["example_idx"],
                                    "sampling_step": f.f_locals["sampling_step"], "seed": kwargs["seed"],
                                    "prefix_length": len(tokens), "results": results, "masks": masks})
            return results, masks

        def reward(task, conversation, response):
            return rec.reward(response) if rec.reward is not None else orig["reward"](task, conversation, response)

        def log(w, data, *a, **k):
            if "pass@1" in data:
                rec.passk.append(dict(data))

        def compute_init(device_type="cuda"):  # chat_rl.py has no device_type setting; the run is on CPU
            return orig["compute_init"]("cpu")

        gpt.GPT.forward, muon.Muon.step, engine.Engine.generate_batch = forward, step, generate_batch
        gsm8k.GSM8K.reward, torch.Tensor.backward, common.DummyWandb.log = reward, backward, log
        common.compute_init = compute_init

        def restore():
            gpt.GPT.forward, muon.Muon.step, engine.Engine.generate_batch = orig["forward"], orig["step"], orig["generate"]
            gsm8k.GSM8K.reward, torch.Tensor.backward, common.DummyWandb.log = orig["reward"], orig["backward"], orig["log"]
            common.compute_init = orig["compute_init"]
        self.restore = restore


def run_rl(env, argv, rec):
    rec.install()
    sys.argv = ["scripts/chat_rl.py"] + argv
    try:
        runpy.run_path("scripts/chat_rl.py", run_name="__main__")
    except StopRun:
        pass
    finally:
        rec.restore()


def scripted_rollouts(tokenizer):
    """Rollouts for the loss fixture, chosen to cover every case of the loss (NANOCHAT.md §5.5): a sample that
    ended early (padded), one with a calculator call whose forced output has mask 0, one that hit max tokens (no
    terminal token, its last token trained), one that generated nothing (only prompt and padding); the last
    example's first pass has no trained target at all."""
    special = tokenizer.encode_special
    words = tokenizer.encode(" Natalia sold 48 clips in April and half as many in May, so she sold 72 in all.")
    calc = ([special("<|python_start|>")] + tokenizer.encode("48/2") + [special("<|python_end|>")],
            [special("<|output_start|>")] + tokenizer.encode("24.0") + [special("<|output_end|>")])
    #         (generated tokens, mask)
    ended = (words[:5], [1] * 5)
    tool = (words[:3] + calc[0] + calc[1] + words[3:6], [1] * (3 + len(calc[0])) + [0] * len(calc[1]) + [1] * 3)
    full = (words[:16], [1] * 16)
    empty = ([], [])
    plans = [[ended, tool, full, empty], [tool, ended, empty, full], [empty, empty, full, tool]]
    calls = {"n": 0}

    def generate(tokens, num_samples):
        plan = plans[(calls["n"] // 2) % len(plans)]
        rows = plan[(calls["n"] % 2) * num_samples:(calls["n"] % 2 + 1) * num_samples]
        calls["n"] += 1
        return ([tokens + g for g, _ in rows], [[0] * len(tokens) + m for _, m in rows])
    return generate, plans


def phase_rl(env, out):
    """rl.json: scripts/chat_rl.py on the committed d2 base weights (source=base), CPU fp32, two runs."""
    torch = env.torch
    ckdir = os.path.join(env.base, "base_checkpoints", "d2")
    os.makedirs(ckdir, exist_ok=True)
    for f in ("model_000000.pt", "meta_000000.json"):
        shutil.copyfile(os.path.join(out, "base_d2", f), os.path.join(ckdir, f))
    from nanochat.tokenizer import get_tokenizer
    tokenizer = get_tokenizer()
    common = ["--source=base", "--dtype=float32", "--device_batch_size=2", "--num_samples=4"]

    # (1) the loss: one step on scripted rollouts and rewards
    generate, plans = scripted_rollouts(tokenizer)
    rewards = iter([1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0])
    loss_argv = common + ["--examples_per_step=3", "--max_new_tokens=16", "--eval_examples=0", "--save_every=1000"]
    rec = RlRecorder(torch, stop_after=1, scripted=generate, reward=lambda response: next(rewards))
    run_rl(env, loss_argv, rec)
    loss = {"argv": loss_argv, "generations": rec.generations, "examples": rec.examples, "step": rec.steps[0]}
    loss["notes"] = NOTES_COMMON + [
        "runpy of scripts/chat_rl.py with argv above from the committed base_d2 (source=base); compute_init forced to "
        "device_type='cpu' (the script has no device setting); its autocast(device_type='cuda') is disabled without CUDA.",
        "Engine.generate_batch replaced by scripted rollouts (prompt = the script's render_for_completion of the example, "
        "then the generated tokens and masks of scripted_rollouts() in make_chat_golden.py), GSM8K.reward by the "
        "rewards listed in examples[*].rewards, in call order. eval_examples=0: the step-0 evaluation has no question.",
        "The run is stopped right after the first optimizer step (AdamW then Muon, lrm 1). examples[*]: the script's "
        "sequences_all, inputs_all, targets_all, rewards_all, advantages_all per example; step.pass_losses: the value "
        "of each loss.backward() (examples x passes, in order); step.grad_norms: float64 norms of every .grad before "
        "the update; step.param_norms / params_sha256: the weights after it.",
    ]

    # (2) whole steps: the engine's rollouts with the script's seeds, a stand-in reward, the pass@k evaluation
    eval_max_tokens = 12
    loop_argv = common + ["--examples_per_step=50", f"--max_new_tokens={eval_max_tokens}", "--eval_every=2",
                          "--eval_examples=4", "--save_every=1000"]
    rec = RlRecorder(torch, reward=lambda response: float(len(response) % 2), eval_max_tokens=eval_max_tokens)
    run_rl(env, loop_argv, rec)
    loop = {"argv": loop_argv, "steps": rec.steps, "passk": rec.passk, "evals": rec.evals,
            # RL_ALL_GENERATIONS=1 keeps every step's (to find where a run parts from the reference)
            "generations": [g for g in rec.generations if g["step"] == 0 or os.environ.get("RL_ALL_GENERATIONS")],
            "seeds": [[g["step"], g["example_idx"], g["sampling_step"], g["seed"]] for g in rec.generations]}
    ck = os.path.join(env.base, "chatrl_checkpoints", "d2")
    loop["checkpoints"] = sorted(os.path.basename(f) for f in glob.glob(os.path.join(ck, "meta_*.json")))
    loop["notes"] = NOTES_COMMON + [
        "runpy of scripts/chat_rl.py with argv above from base_d2 (source=base): 150 stand-in GSM8K train rows // 50 "
        "examples per step = 3 steps, the engine's real rollouts (seed = hash((step, example_idx, sampling_step)) & "
        "0x7FFFFFFF, torch.Generator on CPU), no scripted rewards: GSM8K.reward was replaced by float(len(response) % 2) "
        "(len in code points of the decoded generated text), so that a random model gets rewards of both kinds.",
        "run_gsm8k_eval's generate_batch calls (they pass no seed, so seed 42) were given max_tokens=12 instead of the "
        "script's fixed 256, the same as the training rollouts; pass@k is what the script logged (k = 1..device_batch_size).",
        "steps[*]: lrm, mean_reward and mean_sequence_length as the script computed them, pass_losses, gradient norms "
        "before and parameter norms after each update. generations[*]: the training generate_batch calls of step 0 "
        "(from the committed weights); seeds: the seed of every call of every step.",
    ]
    write_json(os.path.join(out, "rl.json"), {"loss": loss, "loop": loop})


# -----------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description="golden chat fixtures from the reference nanochat")
    ap.add_argument("--nanochat", required=True, help="checkout of karpathy/nanochat at 10231df")
    ap.add_argument("--out", default="tests/golden/chat")
    ap.add_argument("--standins", default=STANDINS_DEFAULT)
    ap.add_argument("--scratch", default="/tmp/nanochat-golden-scratch")
    ap.add_argument("--phase", default="all", choices=["all", "tok", "render", "tasks", "eval", "mix", "train", "engine", "chateval", "rl"])
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    env = Env(args.nanochat, args.standins, args.scratch)
    # every phase needs the tokenizer in the scratch base dir: train it, or reuse the committed one
    if args.phase in ("all", "tok"):
        phase_tok(env, out)
    else:
        os.makedirs(os.path.join(env.base, "tokenizer"))
        shutil.copyfile(os.path.join(out, "tokenizer.pkl"), os.path.join(env.base, "tokenizer", "tokenizer.pkl"))
        sys.argv = ["tok_train"]  # token_bytes.pt: rebuild it the way tok_train.py does, by running it is too slow
        from nanochat.tokenizer import get_tokenizer
        meta = json.load(open(os.path.join(out, "tokenizer_meta.json")))
        env.torch.save(env.torch.tensor(meta["token_bytes"], dtype=env.torch.int32),
                       os.path.join(env.base, "tokenizer", "token_bytes.pt"))
        get_tokenizer()
    for name, fn in (("render", phase_render), ("tasks", phase_tasks), ("eval", phase_eval), ("mix", phase_mix),
                     ("train", phase_train), ("engine", phase_engine), ("chateval", phase_chateval), ("rl", phase_rl)):
        if args.phase in ("all", name):
            fn(env, out)


if __name__ == "__main__":
    main()
