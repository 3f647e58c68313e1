#!/usr/bin/env python3
"""Golden fixtures for CORE (NANOCHAT.md §6.1), made by RUNNING the reference (Karpathy's nanochat at
commit 10231df) on CPU: nanochat/core_eval.py (evaluate_example, and the functions it is made of)
and scripts/base_eval.py's evaluate_model, over small bundles in the real layout that this script
writes. No reference code is copied here: the checkout given with --nanochat is imported; this file
writes the inputs and records what the reference computes.

Command and environment used for the committed fixtures (repository root as working directory):

    git --git-dir=<mirror of github.com/karpathy/nanochat> archive 10231df | tar -x -C /tmp/nanochat-ref
    pip install --target /tmp/refdeps-core pyyaml                       # PyYAML 6.0.4
    PYTHONPATH=/tmp/refdeps-core .venv/bin/python tests/golden/core/make_core_golden.py \
        --nanochat /tmp/nanochat-ref --out tests/golden/core
    (.venv: CPython 3.11, torch 2.11.0 (CPU), jinja2 3.1.6, tiktoken 0.14.0, rustbpe 0.1.0.)

The model: the reference's d2 checkpoint of tests/golden/chat/base_d2 (seed 42, init_weights) has
lm_head and both c_proj matrices at zero, so every option would score ln(V) and every greedy token
would be 0. This script fills those three kinds of matrices with seeded normal noise
(torch.manual_seed(2024): lm_head std 0.5, c_proj std 0.2) so losses differ between options and
attention and MLP contribute, and saves the result in the reference's checkpoint format as
model_d2/model_000000.pt + meta_000000.json. The tokenizer is tests/golden/chat/tokenizer.pkl
(RustBPETokenizer.from_directory; the same merges as tests/golden/chat/tokenizer.ranks).

The bundles (bundles/<name>/core.yaml, eval_meta_data.csv, eval_data/...) are written by this
script: all three task types, few-shot 0 and > 0 (up to every other example), the delimiters " "
(also by default), "\\nAnswer: " and ": ", contexts and choices with leading/trailing whitespace,
unicode, a choice whose tokens are a prefix of another's (an empty answer span, NaN mean loss), and
language-modeling examples whose continuation is the model's own greedy continuation (so exact
matches happen), found by asking the reference's forward_model.

core.json:
  {"notes", "model": {"dir", "seed", "lm_head_std", "c_proj_std"},
   "runs": [{"bundle", "max_per_task", "core_metric", "tasks": [{"label", "task_type", "num_fewshot",
     "delimiter", "random_baseline", "accuracy", "centered", "examples": [{"line" (0-based line of the
     example in its JSONL file), "fewshot" (indices into the shuffled, cropped list), "prompts",
     "lengths" (token rows with <|bos|>), "starts", "ends", "mean_losses" (null for NaN),
     "correct"}]}]}]}
  accuracy / centered / core_metric are scripts/base_eval.py evaluate_model's numbers; correct is
  core_eval.evaluate_example's verdict; mean_losses are core_eval.forward_model's losses averaged
  over each row's span [start-1, end-1) as evaluate_example does (language modeling included).
"""

import argparse
import json
import math
import os
import random
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
CHAT_GOLDEN = os.path.join(HERE, "..", "chat")
SEED, LM_HEAD_STD, C_PROJ_STD = 2024, 0.5, 0.2

MC_QUESTIONS = [
    ("Question: What color is grass?", [" green", " purple", " orange"], 0),
    ("Question: Which animal says moo?  ", ["cow", "duck", "cat", "owl"], 0),
    ("Which is a fruit?", ["a carrot", "an apple", "a potato"], 1),
    ("Question: Where do penguins live?", ["the Antarctic", "the Sahara", "a volcano "], 0),
    ("Q: Pick the even number.", ["3", "7", "12", "9"], 2),
    ("What is the sky's color on a clear day?", ["blue", "blue sky"], 1),
    ("Question: What do you see at sunset?", ["a red sky", "a red"], 1),
    ("Question: ¿Qué idioma se habla en México?", ["español", "français", "日本語"], 0),
    ("Question: How many days are in a week?", ["five", "seven", "ten"], 1),
    ("\tQuestion: Which tool cuts paper?", ["scissors", "a hammer", "a sponge"], 0),
]
SCHEMA_ITEMS = [
    (["The cup fell off the table because the cup", "The cup fell off the table because the table"], "was near the edge.", 0),
    (["Lena lent Kim a pen since Lena", "Lena lent Kim a pen since Kim"], "had forgotten one.", 1),
    (["The bird left the nest when the bird ", "The bird left the nest when the nest "], "was grown.", 0),
    (["Rain soaked the field so the rain", "Rain soaked the field so the field"], "turned to mud.", 1),
    (["The car passed the bike because the car", "The car passed the bike because the bike"], "was faster.", 0),
    (["Ann called Bea after Ann", "Ann called Bea after Bea"], "sent a letter.", 1),
]
LM_ITEMS = [
    ("one two three  ", "four"),
    ("  The cat sat on the\n", "mat"),
    ("Monday, Tuesday,", " Wednesday"),
    ("1 2 3 4 5", "6"),
    ("Salt and", "pepper"),
    ("A B C D\n\n", "E"),
    ("Café au", "lait"),
    ("up and", "down"),
]
GREEDY_CONTEXTS = [
    "The river runs", "Once upon a time", "She opened the door and", "In the morning we", "The answer is",
    "Numbers: 4, 8, 15,", "He said that", "Trees grow", "The old man", "My favorite food is", "They went to",
    "A small dog", "It was a cold", "We found the", "Light travels", "The book on the",
]


def write_bundle(root, yaml_text, meta_rows, files):
    if os.path.exists(root):
        shutil.rmtree(root)
    os.makedirs(os.path.join(root, "eval_data"))
    with open(os.path.join(root, "core.yaml"), "w", encoding="utf-8") as f:
        f.write(yaml_text)
    with open(os.path.join(root, "eval_meta_data.csv"), "w", encoding="utf-8") as f:
        f.write("Eval Task,Task Category,Task Type,#shots,Random baseline,Centered Metric?,Description\n")
        for row in meta_rows:
            f.write(row + "\n")
    for rel, items in files.items():
        path = os.path.join(root, "eval_data", rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            for item in items:
                f.write(json.dumps(item, ensure_ascii=False) + "\n")


def greedy_items(ce, model, tokenizer, delimiter, want_true, want_false):
    """Zero-shot LM items: some continuations are the model's greedy continuation (checked with the
    reference's own evaluate_example), others are not."""
    import torch
    bos = tokenizer.get_bos_token_id()
    true_items, false_items = [], []
    for i, context in enumerate(GREEDY_CONTEXTS):
        without = ce.render_prompts_lm({"context": context, "continuation": ""}, delimiter)[0]
        tail = (context.strip() + delimiter)[len(without):]
        ids = tokenizer(without, prepend=bos)
        for _ in range(1 + i % 3):
            _, predictions = ce.forward_model(model, torch.tensor([ids], dtype=torch.long))
            ids = ids + [int(predictions[0, -1])]
        text = tokenizer.decode(ids[len(tokenizer(without, prepend=bos)):])
        if text.startswith(tail) and len(text) > len(tail) and "\ufffd" not in text:
            item = {"context": context, "continuation": text[len(tail):]}
        else:
            item = {"context": context, "continuation": "and then"}
        meta = {"task_type": "language_modeling", "num_fewshot": 0, "continuation_delimiter": delimiter}
        try:
            correct = ce.evaluate_example(0, model, tokenizer, [item], "cpu", meta)
        except AssertionError:
            continue
        (true_items if correct else false_items).append(item)
    return true_items[:want_true] + false_items[:want_false]


def bundles(ce, model, tokenizer):
    mc = [{"query": q, "choices": c, "gold": g} for q, c, g in MC_QUESTIONS]
    schema = [{"context_options": o, "continuation": c, "gold": g} for o, c, g in SCHEMA_ITEMS]
    lm = [{"context": c, "continuation": t} for c, t in LM_ITEMS]
    greedy_answer = greedy_items(ce, model, tokenizer, "\nAnswer: ", 3, 3)
    greedy_space = greedy_items(ce, model, tokenizer, " ", 3, 3)
    a_yaml = """# golden bundle a: the real core.yaml layout
icl_tasks:
-
  label: mc_answer_3shot
  dataset_uri: knowledge/mc.jsonl
  num_fewshot: [3]
  icl_task_type: multiple_choice
  continuation_delimiter: "\\nAnswer: " # questions, then answers
-
  label: mc_space_0shot
  dataset_uri: knowledge/mc.jsonl
  num_fewshot: [0]
  icl_task_type: multiple_choice
-
  label: schema_1shot
  dataset_uri: schema/pronouns.jsonl
  num_fewshot: [1]
  icl_task_type: schema
  continuation_delimiter: " "
-
  label: schema_answer_0shot
  dataset_uri: schema/pronouns.jsonl
  num_fewshot: [0]
  icl_task_type: schema
  continuation_delimiter: "\\nAnswer: "
-
  label: lm_space_2shot
  dataset_uri: lm/sequences.jsonl
  num_fewshot: [2]
  icl_task_type: language_modeling
-
  label: lm_answer_3shot
  dataset_uri: lm/sequences.jsonl
  num_fewshot: [3]
  icl_task_type: language_modeling
  continuation_delimiter: "\\nAnswer: "
-
  label: lm_greedy_answer_0shot
  dataset_uri: lm/greedy_answer.jsonl
  num_fewshot: [0]
  icl_task_type: language_modeling
  continuation_delimiter: "\\nAnswer: "
-
  label: lm_greedy_space_0shot
  dataset_uri: lm/greedy_space.jsonl
  num_fewshot: [0]
  icl_task_type: language_modeling
  has_categories: false
"""
    a_meta = [
        'mc_answer_3shot,knowledge,multiple choice,3,33.333,,"Questions, three or four choices"',
        "mc_space_0shot,knowledge,multiple choice,0,30,,plain",
        'schema_1shot,schema,schema,1,50,,"Pronouns, ""which one"""',
        "schema_answer_0shot,schema,schema,0,50,,",
        "lm_space_2shot,lm,language modeling,2,0,,",
        "lm_answer_3shot,lm,language modeling,3,0,,",
        "lm_greedy_answer_0shot,lm,language modeling,0,0,,",
        "lm_greedy_space_0shot,lm,language modeling,0,0.0,,",
    ]
    b_yaml = """icl_tasks:
  - {label: "mc colon all shots", dataset_uri: mc_small.jsonl, num_fewshot: [3], icl_task_type: multiple_choice, continuation_delimiter: ": "}
  - label: schema all shots
    dataset_uri: schema_small.jsonl
    num_fewshot: [2, 5]
    icl_task_type: schema
  - label: lm colon
    dataset_uri: lm_small.jsonl
    num_fewshot:
      - 1
    icl_task_type: language_modeling
    continuation_delimiter: ': '
"""
    b_meta = ["mc colon all shots,a,b,3,25,,", "schema all shots,a,b,2,50,,", "lm colon,a,b,1,0,,"]
    return [
        ("golden_a", a_yaml, a_meta, {
            "knowledge/mc.jsonl": mc, "schema/pronouns.jsonl": schema, "lm/sequences.jsonl": lm,
            "lm/greedy_answer.jsonl": greedy_answer, "lm/greedy_space.jsonl": greedy_space,
        }),
        ("golden_b", b_yaml, b_meta, {
            "mc_small.jsonl": mc[:4], "schema_small.jsonl": schema[:3], "lm_small.jsonl": lm[:4],
        }),
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nanochat", required=True)
    ap.add_argument("--out", default=HERE)
    args = ap.parse_args()
    sys.path.insert(0, os.path.abspath(args.nanochat))
    import torch
    import yaml
    import nanochat.core_eval as ce
    from nanochat.gpt import GPT, GPTConfig
    from nanochat.tokenizer import RustBPETokenizer
    torch.set_num_threads(1)

    tokenizer = RustBPETokenizer.from_directory(CHAT_GOLDEN)
    with open(os.path.join(CHAT_GOLDEN, "base_d2", "meta_000000.json")) as f:
        meta = json.load(f)
    state = torch.load(os.path.join(CHAT_GOLDEN, "base_d2", "model_000000.pt"), map_location="cpu")
    torch.manual_seed(SEED)
    for name in sorted(state):
        if name == "lm_head.weight":
            state[name] = torch.randn_like(state[name]) * LM_HEAD_STD
        elif name.endswith("c_proj.weight"):
            state[name] = torch.randn_like(state[name]) * C_PROJ_STD
    model_dir = os.path.join(args.out, "model_d2")
    os.makedirs(model_dir, exist_ok=True)
    torch.save(state, os.path.join(model_dir, "model_000000.pt"))
    with open(os.path.join(model_dir, "meta_000000.json"), "w") as f:
        json.dump(meta, f, indent=2)
    with torch.device("meta"):
        model = GPT(GPTConfig(**meta["model_config"]))
    model.to_empty(device="cpu")
    model.init_weights()
    model.load_state_dict(state, strict=True, assign=True)
    model.eval()

    import scripts.base_eval as base_eval
    runs = []
    for name, yaml_text, meta_rows, files in bundles(ce, model, tokenizer):
        root = os.path.join(args.out, "bundles", name)
        write_bundle(root, yaml_text, meta_rows, files)
        for max_per_task in ([-1, 5] if name == "golden_a" else [-1]):
            with tempfile.TemporaryDirectory() as base:
                shutil.copytree(root, os.path.join(base, "eval_bundle"))
                os.environ["NANOCHAT_BASE_DIR"] = base
                out = base_eval.evaluate_model(model, tokenizer, "cpu", max_per_task=max_per_task)
            runs.append(record_run(ce, model, tokenizer, root, name, max_per_task, out, yaml))
    golden = {
        "notes": [
            "Made by running the reference nanochat at 10231df on CPU (fp32, torch 2.11.0); see make_core_golden.py.",
            "mean_losses are float32 means as Python floats; null = NaN (an empty answer span).",
        ],
        "model": {"dir": "model_d2", "seed": SEED, "lm_head_std": LM_HEAD_STD, "c_proj_std": C_PROJ_STD},
        "runs": runs,
    }
    with open(os.path.join(args.out, "core.json"), "w", encoding="utf-8") as f:
        json.dump(golden, f, indent=1, ensure_ascii=False)
        f.write("\n")
    for run in runs:
        flat = [e["correct"] for t in run["tasks"] for e in t["examples"]]
        print(f"{run['bundle']} max_per_task={run['max_per_task']}: CORE {run['core_metric']:.6f}, "
              f"{sum(flat)}/{len(flat)} correct")


def record_run(ce, model, tokenizer, root, name, max_per_task, out, yaml):
    import torch
    with open(os.path.join(root, "core.yaml"), encoding="utf-8") as f:
        tasks = yaml.safe_load(f)["icl_tasks"]
    baselines = {}
    import csv
    with open(os.path.join(root, "eval_meta_data.csv"), encoding="utf-8") as f:
        for row in csv.DictReader(f):
            baselines[row["Eval Task"]] = float(row["Random baseline"])
    recorded = []
    for task in tasks:
        label = task["label"]
        meta = {"task_type": task["icl_task_type"], "num_fewshot": task["num_fewshot"][0],
                "continuation_delimiter": task.get("continuation_delimiter", " ")}
        with open(os.path.join(root, "eval_data", task["dataset_uri"]), encoding="utf-8") as f:
            data = [json.loads(line.strip()) for line in f]
        order = list(range(len(data)))
        random.Random(1337).shuffle(order)
        if max_per_task > 0:
            order = order[:max_per_task]
        data = [data[i] for i in order]
        examples = []
        for idx in range(len(data)):
            fewshot = []
            if meta["num_fewshot"] > 0:
                fewshot = random.Random(1234 + idx).sample([i for i in range(len(data)) if i != idx], meta["num_fewshot"])
            shots = [data[i] for i in fewshot]
            render, batch = {
                "multiple_choice": (ce.render_prompts_mc, ce.batch_sequences_mc),
                "schema": (ce.render_prompts_schema, ce.batch_sequences_schema),
                "language_modeling": (ce.render_prompts_lm, ce.batch_sequences_lm),
            }[meta["task_type"]]
            prompts = render(data[idx], meta["continuation_delimiter"], shots)
            tokens, starts, ends = batch(tokenizer, prompts)
            losses, _ = ce.forward_model(model, ce.stack_sequences(tokens, tokenizer.get_bos_token_id()))
            means = [losses[i, s - 1:e - 1].mean().item() for i, (s, e) in enumerate(zip(starts, ends))]
            correct = ce.evaluate_example(idx, model, tokenizer, data, "cpu", meta)
            examples.append({
                "line": order[idx], "fewshot": fewshot, "prompts": prompts, "lengths": [len(t) for t in tokens],
                "starts": starts, "ends": ends, "mean_losses": [None if math.isnan(m) else m for m in means],
                "correct": bool(correct),
            })
        recorded.append({
            "label": label, "task_type": meta["task_type"], "num_fewshot": meta["num_fewshot"],
            "delimiter": meta["continuation_delimiter"], "random_baseline": baselines[label],
            "accuracy": out["results"][label], "centered": out["centered_results"][label], "examples": examples,
        })
        assert abs(sum(e["correct"] for e in examples) / len(examples) - out["results"][label]) < 1e-6, label
    return {"bundle": name, "max_per_task": max_per_task, "core_metric": out["core_metric"], "tasks": recorded}


if __name__ == "__main__":
    main()
