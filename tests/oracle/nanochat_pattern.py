"""NANOCHAT.md section 1.1 SPLIT_PATTERN and section 1.2 special tokens, for the oracle scripts."""
SPLIT_PATTERN = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
SPECIAL_TOKENS = ["<|bos|>", "<|user_start|>", "<|user_end|>", "<|assistant_start|>",
                  "<|assistant_end|>", "<|python_start|>", "<|python_end|>",
                  "<|output_start|>", "<|output_end|>"]


def read_jsonl(path):
    import json
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def load_ranks(path):
    import base64
    ranks = {}
    with open(path, encoding="ascii") as f:
        for line in f:
            if line.strip():
                b64, rank = line.split()
                ranks[base64.b64decode(b64)] = int(rank)
    return ranks


def write_ranks(path, pairs):
    import base64
    with open(path, "w", encoding="ascii") as f:
        for token, rank in pairs:
            f.write(f"{base64.b64encode(bytes(token)).decode()} {rank}\n")
