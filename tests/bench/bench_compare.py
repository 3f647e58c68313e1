"""Tokenizer benchmark: our Rust BpeTrainer/BpeEncoder vs the reference (rustbpe for training,
tiktoken for encoding, NANOCHAT.md section 1.3) on the same corpus, same machine, same run.
Prints a markdown table: training wall time and peak RSS at each vocab size (and whether the
ranks are byte-identical), then encode throughput (1 thread and all threads).

usage (from the crate root, after `make build`; `make bench` runs it):
  .venv/bin/python tests/bench/bench_compare.py [--corpus-mb 40] [--vocab 4096 65536] [--encode-mb 20]"""
import argparse
import filecmp
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "oracle"))
from nanochat_pattern import SPECIAL_TOKENS, SPLIT_PATTERN, load_ranks, read_jsonl  # noqa: E402


def run_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def tiktoken_encode(ranks_path, corpus, max_mb, threads):
    import tiktoken
    ranks = load_ranks(ranks_path)
    enc = tiktoken.Encoding(
        name="rustbpe", pat_str=SPLIT_PATTERN, mergeable_ranks=ranks,
        special_tokens={s: len(ranks) + i for i, s in enumerate(SPECIAL_TOKENS)})
    docs, size = [], 0
    for d in read_jsonl(corpus):
        if size >= max_mb * 1e6:
            break
        docs.append(d)
        size += len(d.encode("utf-8"))
    enc.encode_ordinary(docs[0])
    single = batch = float("inf")
    tokens = 0
    for _ in range(3):
        t0 = time.perf_counter()
        tokens = sum(len(enc.encode_ordinary(d)) for d in docs)
        single = min(single, time.perf_counter() - t0)
    for _ in range(3):
        t0 = time.perf_counter()
        enc.encode_ordinary_batch(docs, num_threads=threads)
        batch = min(batch, time.perf_counter() - t0)
    mb = size / 1e6
    return {"mb": mb, "tokens": tokens, "mb_per_s_1_thread": mb / single,
            "mb_per_s_all_threads": mb / batch}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus-mb", type=float, default=40)
    ap.add_argument("--vocab", type=int, nargs="+", default=[4096, 65536])
    ap.add_argument("--encode-mb", type=float, default=20)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "nanochat"))
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    threads = os.cpu_count()
    work = args.workdir or tempfile.mkdtemp(prefix="tokbench_")
    corpus = os.path.join(work, "corpus.jsonl")
    info = run_json([sys.executable, os.path.join(HERE, "make_corpus.py"), corpus, str(args.corpus_mb)])
    print(f"corpus: {info['documents']} documents, {info['bytes'] / 1e6:.1f} MB "
          f"(multilingual sample, common-licenses, Python stdlib sources, /usr/share/doc); "
          f"{threads} CPU threads; load average before: {os.getloadavg()[0]:.2f}\n")

    print("| training | vocab | wall time (s) | peak RSS (MiB) | ours / rustbpe time | identical ranks |")
    print("|---|---|---|---|---|---|")
    last_ranks = None
    for vocab in args.vocab:
        ref_ranks = os.path.join(work, f"rustbpe_{vocab}.ranks")
        our_ranks = os.path.join(work, f"ours_{vocab}.ranks")
        ref = run_json([sys.executable, os.path.join(ROOT, "tests", "oracle", "train_rustbpe.py"),
                        corpus, str(vocab), ref_ranks])
        ours = run_json([args.bin, "bench", "tokenizer", "train", corpus, str(vocab), our_ranks])
        same = filecmp.cmp(ref_ranks, our_ranks, shallow=False)
        ratio = ours["seconds"] / ref["seconds"]
        print(f"| rustbpe 0.1.0 | {vocab} | {ref['seconds']:.2f} | {ref['peak_rss_mib']:.0f} | | |")
        print(f"| ours (count {ours['count_seconds']:.2f} s + merge {ours['merge_seconds']:.2f} s) "
              f"| {vocab} | {ours['seconds']:.2f} | {ours['peak_rss_mib']:.0f} | {ratio:.2f}x | "
              f"{'yes' if same else 'NO'} |")
        last_ranks = our_ranks

    print(f"\n| encode (vocab {args.vocab[-1]}, {args.encode_mb:.0f} MB) | MB/s 1 thread | "
          f"MB/s {threads} threads | tokens |")
    print("|---|---|---|---|")
    tk = tiktoken_encode(last_ranks, corpus, args.encode_mb, threads)
    ours = run_json([args.bin, "bench", "tokenizer", "encode", last_ranks, corpus, str(args.encode_mb)])
    print(f"| tiktoken | {tk['mb_per_s_1_thread']:.1f} | {tk['mb_per_s_all_threads']:.1f} | {tk['tokens']} |")
    print(f"| ours | {ours['mb_per_s_1_thread']:.1f} | {ours['mb_per_s_all_threads']:.1f} | {ours['tokens']} |")
    print(f"| ours / tiktoken | {ours['mb_per_s_1_thread'] / tk['mb_per_s_1_thread']:.1f}x | "
          f"{ours['mb_per_s_all_threads'] / tk['mb_per_s_all_threads']:.1f}x | "
          f"{'same count' if ours['tokens'] == tk['tokens'] else 'DIFFERENT'} |")


if __name__ == "__main__":
    main()
