"""Oracle: encode JSONL texts with tiktoken built from a rank file (pattern and specials of
NANOCHAT.md section 1.1-1.2) and with HuggingFace tokenizers loading a tokenizer.json; writes
JSONL lines {"tiktoken": ids, "tiktoken_special": ids, "hf": ids, "hf_decoded": text}.

usage: encode_reference.py RANKS TOKENIZER_JSON TEXTS.jsonl OUT.jsonl"""
import json
import sys

import tiktoken
from tokenizers import Tokenizer

from nanochat_pattern import SPECIAL_TOKENS, SPLIT_PATTERN, load_ranks, read_jsonl

ranks_path, hf_path, texts_path, out_path = sys.argv[1:5]
ranks = load_ranks(ranks_path)
enc = tiktoken.Encoding(
    name="rustbpe",
    pat_str=SPLIT_PATTERN,
    mergeable_ranks=ranks,
    special_tokens={s: len(ranks) + i for i, s in enumerate(SPECIAL_TOKENS)},
)
hf = Tokenizer.from_file(hf_path)
with open(out_path, "w", encoding="utf-8") as out:
    for text in read_jsonl(texts_path):
        hf_ids = hf.encode(text, add_special_tokens=False).ids
        row = {
            "tiktoken": enc.encode_ordinary(text),
            "tiktoken_special": enc.encode(text, allowed_special="all"),
            "hf": hf_ids,
            "hf_decoded": hf.decode(hf_ids, skip_special_tokens=False),
        }
        out.write(json.dumps(row) + "\n")
