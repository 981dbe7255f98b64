"""How far tollway's token estimate is from a real tokenizer, per kind of text.

Reads bench/corpus/*.txt (samples separated by a line holding only ``%%%``), counts every
sample with the reference tokenizer and with ``tollway.routing.tokens.estimate_text_tokens``
(and, for comparison, the naive characters / 4), and prints the mean absolute percentage
error (MAPE) per corpus and overall (the mean over all samples), plus the signed error of
each corpus taken whole.

Reference: OpenAI's o200k_base (or cl100k_base) run by tiktoken. No network is needed: when
the ``bpe-openai`` package is installed, its bundled copy of the vocabulary is written to a
temporary tiktoken cache, and tiktoken checks it against the SHA-256 it pins before using it.
Optionally also Claude's legacy tokenizer (``--claude-tokenizer``: the tokenizer.json that
``anthropic`` SDK releases up to 0.38.0 shipped) through ``tokenizers``.

Run it (see bench/COUNT_TOKENS.md):
    python -m venv /tmp/tokbench
    /tmp/tokbench/bin/pip install msgspec tiktoken==0.14.0 bpe-openai==0.1.4 tokenizers
    PYTHONPATH=src /tmp/tokbench/bin/python bench/count_tokens_accuracy.py
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "src"))

from tollway.routing.tokens import estimate_text_tokens  # noqa: E402

TIKTOKEN_URL = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"

Counter = Callable[[str], int]


def load_samples(corpus_dir: Path) -> dict[str, list[str]]:
    corpora: dict[str, list[str]] = {}
    for path in sorted(corpus_dir.glob("*.txt")):
        text = path.read_text(encoding="utf-8")
        samples = [s.strip("\n") for s in text.split("\n%%%\n")]
        corpora[path.stem] = [s for s in samples if s.strip()]
    return corpora


def seed_tiktoken_cache(encoding: str) -> str | None:
    """Write bpe-openai's bundled vocabulary where tiktoken looks first; tiktoken verifies it."""
    try:
        data_pkg = importlib.import_module("bpe_openai.data")
    except ImportError:
        return None
    source = Path(data_pkg.__file__).parent / f"{encoding}.tiktoken.gz"
    if not source.exists():
        return None
    cache = os.environ.get("TIKTOKEN_CACHE_DIR") or tempfile.mkdtemp(prefix="tiktoken-cache-")
    key = hashlib.sha1(TIKTOKEN_URL.format(encoding).encode()).hexdigest()
    target = Path(cache) / key
    if not target.exists():
        target.write_bytes(gzip.decompress(source.read_bytes()))
    os.environ["TIKTOKEN_CACHE_DIR"] = cache
    return cache


def reference_counter(encoding: str) -> tuple[Counter, str]:
    seeded = seed_tiktoken_cache(encoding)
    try:
        tiktoken: Any = importlib.import_module("tiktoken")
    except ImportError:
        tiktoken = None
    if tiktoken is not None:
        enc = tiktoken.get_encoding(encoding)  # a seeded cache is checked against the pinned SHA-256
        how = f"tiktoken {tiktoken.__version__}, {encoding}"
        if seeded:
            how += f" (vocabulary from bpe-openai {_version('bpe-openai')}, SHA-256 checked by tiktoken)"
        return (lambda text: len(enc.encode(text, disallowed_special=()))), how
    bpe: Any = importlib.import_module("bpe_openai")
    enc = bpe.get_encoding(encoding)
    return (lambda text: len(enc.encode_ordinary(text))), f"bpe-openai {_version('bpe-openai')}, {encoding}"


def claude_legacy_counter(path: str) -> tuple[Counter, str]:
    tokenizers: Any = importlib.import_module("tokenizers")
    tok = tokenizers.Tokenizer.from_file(path)
    name = f"Claude legacy tokenizer.json via tokenizers {tokenizers.__version__}"
    return (lambda text: len(tok.encode(text).ids)), name


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


def chars4(text: str) -> int:
    return max(1, round(len(text) / 4)) if text else 0


def report(corpora: dict[str, list[str]], ref: Counter, ref_name: str) -> None:
    print(f"\nreference: {ref_name}")
    print(f"{'corpus':<10}{'samples':>8}{'ref tokens':>11}{'MAPE est':>10}{'MAPE c/4':>10}"
          f"{'whole est':>11}{'whole c/4':>11}")
    all_est: list[float] = []
    all_c4: list[float] = []
    for name, samples in corpora.items():
        refs = [ref(s) for s in samples]
        ests = [estimate_text_tokens(s) for s in samples]
        c4s = [chars4(s) for s in samples]
        ape_est = [abs(e - r) / r for e, r in zip(ests, refs, strict=True)]
        ape_c4 = [abs(c - r) / r for c, r in zip(c4s, refs, strict=True)]
        all_est += ape_est
        all_c4 += ape_c4
        total = sum(refs)
        print(f"{name:<10}{len(samples):>8}{total:>11}{100 * sum(ape_est) / len(ape_est):>9.1f}%"
              f"{100 * sum(ape_c4) / len(ape_c4):>9.1f}%{100 * (sum(ests) - total) / total:>+10.1f}%"
              f"{100 * (sum(c4s) - total) / total:>+10.1f}%")
    print(f"{'overall':<10}{len(all_est):>8}{'':>11}{100 * sum(all_est) / len(all_est):>9.1f}%"
          f"{100 * sum(all_c4) / len(all_c4):>9.1f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default=str(ROOT / "corpus"))
    parser.add_argument("--encoding", action="append", choices=["o200k_base", "cl100k_base"],
                        help="reference encoding(s); default o200k_base")
    parser.add_argument("--claude-tokenizer", help="path to the tokenizer.json of anthropic<=0.38.0")
    args = parser.parse_args()
    corpora = load_samples(Path(args.corpus))
    print("MAPE: mean over samples of |estimate - reference| / reference. "
          "whole: signed error of the corpus counted as one text.")
    for encoding in args.encoding or ["o200k_base"]:
        report(corpora, *reference_counter(encoding))
    if args.claude_tokenizer:
        report(corpora, *claude_legacy_counter(args.claude_tokenizer))


if __name__ == "__main__":
    main()
