"""Oracle: train rustbpe (the reference trainer, NANOCHAT.md section 1.3) on a JSONL corpus and
write its mergeable ranks as a rank file; prints wall time (s) and peak RSS (MiB) as JSON.

usage: train_rustbpe.py CORPUS.jsonl VOCAB_SIZE OUT_RANKS"""
import json
import resource
import sys
import time

import rustbpe

from nanochat_pattern import SPLIT_PATTERN, read_jsonl, write_ranks

corpus, vocab_size, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
tok = rustbpe.Tokenizer()
t0 = time.perf_counter()
tok.train_from_iterator(read_jsonl(corpus), vocab_size, pattern=SPLIT_PATTERN)
seconds = time.perf_counter() - t0
write_ranks(out, tok.get_mergeable_ranks())
rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "peak_rss_mib": rss_mib, "vocab": tok.vocab_size}))
