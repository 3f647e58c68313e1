#!/usr/bin/env python3
"""Rewrites the `--hash` entries of the Python locks next to this file from PyPI (standard library only).

Each lock line pins `name==version` (optionally `; python_version ...`). For every pin this writes the sha256
of every wheel of that version that pip could pick on CPython 3.10, 3.11, 3.12 and 3.13 on Linux x86_64
(manylinux up to glibc 2.35, Ubuntu 22.04's; Debian 12 and Ubuntu 24.04 are newer), so
`pip install --require-hashes` accepts whichever of them fits the interpreter. A pin with no such wheel for one
of the Pythons it applies to is an error that names the nearest versions that have one for all of them; nothing
is written then. The comment block at the top of a lock is kept as it is; the pins are sorted by name.

Which packages a lock holds is not decided here: `make setup`/`make test-setup` install without `--no-deps`, so
pip itself refuses a lock that lacks a dependency (in --require-hashes mode every requirement needs a hash).

usage: python3 manifests/python/relock.py [LOCK ...]    (default: runtime.lock and test.lock)
"""
import json
import re
import sys
import urllib.request
from pathlib import Path

PYTHONS = [(3, 10), (3, 11), (3, 12), (3, 13)]
MAX_GLIBC = (2, 35)
LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}


def normalize(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def version_key(version):
    """A sort key for final and post releases; None for anything else (pre-releases, dev, local)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)*)(?:\.post(\d+))?", version)
    if not m:
        return None
    release = [int(p) for p in m.group(1).split(".")]
    while len(release) > 1 and release[-1] == 0:
        release.pop()
    return (tuple(release), int(m.group(2)) if m.group(2) else -1)


def python_matches(spec, python):
    """Whether CPython `python` (major, minor) satisfies a comma-separated specifier such as '>=3.9,!=3.10.*'."""
    have = (*python, 0)
    for clause in filter(None, (c.strip() for c in (spec or "").split(","))):
        m = re.fullmatch(r"(~=|==|!=|<=|>=|<|>)\s*([\d.]+?)(\.\*)?", clause)
        if not m:
            raise ValueError(f"cannot read the Python specifier {clause!r}")
        op, version, wildcard = m.groups()
        want = tuple(int(p) for p in version.split("."))
        if wildcard:
            prefix = have[: len(want)] == want
            ok = prefix if op == "==" else not prefix
        else:
            want = (want + (0, 0, 0))[:3]
            ok = {
                "==": have == want,
                "!=": have != want,
                "<=": have <= want,
                ">=": have >= want,
                "<": have < want,
                ">": have > want,
                "~=": have >= want,
            }[op]
        if not ok:
            return False
    return True


def platform_ok(platform):
    if platform == "any":
        return True
    m = re.fullmatch(r"manylinux_(\d+)_(\d+)_x86_64", platform)
    if m:
        return (int(m.group(1)), int(m.group(2))) <= MAX_GLIBC
    legacy = platform.removesuffix("_x86_64")
    return platform.endswith("_x86_64") and LEGACY_MANYLINUX.get(legacy, (99, 0)) <= MAX_GLIBC


def wheel_fits(filename, python):
    """Whether pip on CPython `python`, Linux x86_64, may install this wheel (by its tags only)."""
    py_tags, abi_tags, platforms = filename[: -len(".whl")].split("-")[-3:]
    if not any(platform_ok(p) for p in platforms.split(".")):
        return False
    cp = f"cp3{python[1]}"
    for py in py_tags.split("."):
        for abi in abi_tags.split("."):
            if abi == "none" and py in ("py3", f"py3{python[1]}", cp):
                return True
            if abi == cp and py == cp:
                return True
            if abi == "abi3" and py.startswith("cp3") and int(py[3:]) <= python[1]:
                return True
    return False


def fetch(name):
    request = urllib.request.Request(
        f"https://pypi.org/simple/{normalize(name)}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.load(response)


def wheels_of(project, version, pythons):
    """{python: [(filename, sha256)]} for the non-yanked wheels of `version` that fit each Python."""
    found = {python: [] for python in pythons}
    for f in project["files"]:
        name = f["filename"]
        if not name.endswith(".whl") or f.get("yanked") or name.split("-")[1] != version:
            continue
        for python in pythons:
            if wheel_fits(name, python) and python_matches(f.get("requires-python"), python):
                found[python].append((name, f["hashes"]["sha256"]))
    return found


def applies_to(marker):
    """The Pythons of PYTHONS a marker such as 'python_version < "3.11"' selects ('and' of such clauses)."""
    pythons = list(PYTHONS)
    for clause in filter(None, (c.strip() for c in (marker or "").split(" and "))):
        m = re.fullmatch(r"""python_version\s*(==|!=|<=|>=|<|>)\s*["'](3\.\d+)["']""", clause)
        if not m:
            raise ValueError(f"cannot read the marker clause {clause!r} (only python_version comparisons)")
        pythons = [p for p in pythons if python_matches(m.group(1) + m.group(2), p)]
    return pythons


def read_lock(path):
    """(the leading comment block, [(name, version, marker or None)])."""
    header, pins = [], []
    text = path.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        if not pins and line.startswith("#"):
            header.append(line)
            continue
        requirement = re.sub(r"--hash=\S+", "", line.split("#", 1)[0]).strip()
        if not requirement:
            continue
        spec, _, marker = (part.strip() for part in requirement.partition(";"))
        m = re.fullmatch(r"([A-Za-z0-9._-]+)==([^\s]+)", spec)
        if not m:
            raise ValueError(f"{path}: {requirement!r} is not name==version")
        pins.append((m.group(1), m.group(2), marker or None))
    return header, pins


def relock(path):
    header, pins = read_lock(path)
    lines, errors = [], []
    for name, version, marker in sorted(pins, key=lambda pin: normalize(pin[0])):
        pythons = applies_to(marker)
        project = fetch(name)
        found = wheels_of(project, version, pythons)
        missing = [p for p in pythons if not found[p]]
        if missing:
            covering = [
                v
                for v in project.get("versions", [])
                if version_key(v) and all(wheels_of(project, v, pythons).values())
            ]
            below = [v for v in covering if version_key(v) < version_key(version)]
            above = [v for v in covering if version_key(v) > version_key(version)]
            errors.append(
                f"{name}=={version}: no wheel for CPython {', '.join('%d.%d' % p for p in missing)}; nearest "
                f"versions with one for every Python it applies to: {max(below, key=version_key, default='none')} "
                f"below, {min(above, key=version_key, default='none')} above"
            )
            continue
        hashes = sorted({sha for files in found.values() for _, sha in files})
        lines.append(f"{name}=={version}" + (f" ; {marker}" if marker else "") + " \\")
        lines += [f"    --hash=sha256:{sha}" + (" \\" if i < len(hashes) - 1 else "") for i, sha in enumerate(hashes)]
    if errors:
        raise SystemExit(f"{path}: not written:\n" + "\n".join(errors))
    path.write_text("\n".join(header + lines) + "\n")
    print(f"{path}: {len(pins)} pins")


if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    for lock in sys.argv[1:] or [here / "runtime.lock", here / "test.lock"]:
        relock(Path(lock))
