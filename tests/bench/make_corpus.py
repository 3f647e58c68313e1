"""Builds the benchmark corpus (JSONL, one document of a few KB per line) from real text found on a Debian
+ Python system, in a fixed order: the crate's multilingual sample, /usr/share/common-licenses,
then alternately Python standard library sources and /usr/share/doc text files (plain or .gz).

usage: make_corpus.py OUT.jsonl [MEGABYTES=40]"""
import gzip
import json
import os
import sys
import sysconfig

out_path = sys.argv[1]
budget = int(float(sys.argv[2]) * 1_000_000) if len(sys.argv) > 2 else 40_000_000
here = os.path.dirname(os.path.abspath(__file__))


def files_under(root, suffixes):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in ("site-packages", "__pycache__"))
        for name in sorted(filenames):
            if name.endswith(suffixes):
                yield os.path.join(dirpath, name)


def round_robin(*iterators):
    iterators = list(iterators)
    while iterators:
        for it in list(iterators):
            try:
                yield next(it)
            except StopIteration:
                iterators.remove(it)


def sources():
    yield os.path.join(here, "..", "data", "multilingual.txt")
    lic = "/usr/share/common-licenses"
    if os.path.isdir(lic):
        yield from (os.path.join(lic, n) for n in sorted(os.listdir(lic)))
    # Alternate code and prose-like documentation so that neither dominates.
    yield from round_robin(
        files_under(sysconfig.get_paths()["stdlib"], (".py", ".txt", ".rst")),
        files_under("/usr/share/doc", (".gz", ".txt", "copyright", "README")),
    )


def documents_of(text, target=4000):
    """Cuts a file into web-page-sized documents at paragraph breaks (fineweb documents are a
    few thousand characters; nanochat caps them at 10,000, NANOCHAT.md section 1.4)."""
    doc = ""
    for para in text.split("\n\n"):
        doc = doc + "\n\n" + para if doc else para
        if len(doc) >= target:
            yield doc
            doc = ""
    if doc.strip():
        yield doc


total = docs = 0
with open(out_path, "w", encoding="utf-8") as out:
    for path in sources():
        if total >= budget:
            break
        try:
            if path.endswith(".gz"):
                with gzip.open(path, "rb") as f:
                    text = f.read().decode("utf-8")
            else:
                with open(path, encoding="utf-8") as f:
                    text = f.read()
        except (OSError, UnicodeDecodeError, EOFError):
            continue
        for doc in documents_of(text):
            out.write(json.dumps(doc) + "\n")
            total += len(doc.encode("utf-8"))
            docs += 1
print(json.dumps({"documents": docs, "bytes": total}))
