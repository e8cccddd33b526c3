"""Python peer of `mixlab ingest`: the same steps with Hugging Face `tokenizers` and `pyarrow`.

read JSON lines (gzip) → clean → the same Gopher-style rules with the same per-domain overrides →
exact dedup (normalized text) → MinHash LSH near dedup (numpy, same shingles, permutations, bands and
threshold) → tokenize (tokenizers' Rust `encode_batch`, both cores) → Parquet shards with mixlab's
schema (snappy). It reads the same TOML config so both pipelines do the same work; it prints one JSON
line with throughput and counts.

datatrove was the first choice of peer, but its MinHash dedup is a four-stage, disk-backed pipeline
and its Gopher filters depend on NLTK word tokenizers, so a like-for-like single-pass comparison is
this script (the fallback the benchmark issue allows).

    python bench/peers/python_ingest.py bench/real-corpus.toml OUT_DIR
"""

import gzip
import hashlib
import json
import os
import re
import resource
import sys
import time
import tomllib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tokenizers import Tokenizer

STOP_WORDS = {"the", "be", "to", "of", "and", "that", "have", "with"}
MERSENNE = (1 << 61) - 1
DEFAULT_FILTERS = {
    "min_words": 0,
    "min_alpha_char_fraction": 0.5,
    "min_alpha_word_fraction": 0.8,
    "min_stop_words": 2,
    "mean_word_length": [3.0, 10.0],
    "max_duplicate_line_fraction": 0.30,
    "max_top_ngram_fraction": [0.20, 0.18, 0.16],
    "max_duplicate_ngram_fraction": [0.15, 0.14, 0.13, 0.12, 0.11, 0.10],
}


def check(text, f, min_chars, max_chars):
    """mixlab's filter order and rules; returns a reason or None."""
    n = len(text)
    if n < min_chars:
        return "too_short"
    if n > max_chars:
        return "too_long"
    words = text.split()
    if len(words) < f["min_words"]:
        return "too_few_words"
    non_ws = [c for c in text if not c.isspace()]
    if non_ws and sum(c.isalpha() for c in non_ws) / len(non_ws) < f["min_alpha_char_fraction"]:
        return "low_alpha_chars"
    if not words:
        return None
    if sum(any(c.isalpha() for c in w) for w in words) < f["min_alpha_word_fraction"] * len(words):
        return "low_alpha_words"
    if f["min_stop_words"] > 0:
        stops = sum(1 for w in words if re.sub(r"^\W+|\W+$", "", w).lower() in STOP_WORDS)
        if stops < f["min_stop_words"]:
            return "few_stop_words"
    mean = sum(len(w) for w in words) / len(words)
    lo, hi = f["mean_word_length"]
    if mean < lo or mean > hi:
        return "word_length"
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    if lines and (len(lines) - len(set(lines))) / len(lines) > f["max_duplicate_line_fraction"]:
        return "repeated_lines"
    total = sum(len(w) for w in words)
    for i, limit in enumerate(f["max_top_ngram_fraction"]):
        k = i + 2
        if limit >= 1.0 or len(words) < k:
            continue
        counts = {}
        for j in range(len(words) - k + 1):
            g = tuple(words[j:j + k])
            counts[g] = counts.get(g, 0) + 1
        g, c = max(counts.items(), key=lambda kv: kv[1])
        if c > 1 and sum(len(w) for w in g) * c > limit * total:
            return "repeated_ngrams"
    for i, limit in enumerate(f["max_duplicate_ngram_fraction"]):
        k = i + 5
        if limit >= 1.0 or len(words) < k:
            continue
        seen, covered = set(), [False] * len(words)
        for j in range(len(words) - k + 1):
            g = tuple(words[j:j + k])
            if g in seen:
                covered[j:j + k] = [True] * k
            seen.add(g)
        if sum(len(w) for w, c in zip(words, covered) if c) > limit * total:
            return "repeated_ngrams"
    return None


class MinHashIndex:
    def __init__(self, num_perm, bands, threshold, ngram):
        # 32-bit shingle hashes and 29-bit coefficients keep a·h + b below 2^62: exact in uint64.
        rng = np.random.default_rng(0)
        self.a = rng.integers(1, 1 << 29, num_perm, dtype=np.uint64)
        self.b = rng.integers(0, 1 << 29, num_perm, dtype=np.uint64)
        self.bands, self.rows, self.threshold, self.ngram = bands, num_perm // bands, threshold, ngram
        self.buckets, self.signatures = {}, []

    def signature(self, normalized):
        words = normalized.split(" ")
        grams = [" ".join(words[i:i + self.ngram]) for i in range(max(1, len(words) - self.ngram + 1))]
        h = np.array(sorted({int.from_bytes(hashlib.blake2b(g.encode(), digest_size=4).digest(), "little")
                             for g in grams}), dtype=np.uint64)
        perm = (self.a[:, None] * h[None, :] + self.b[:, None]) % np.uint64(MERSENNE)
        return perm.min(axis=1).astype(np.uint32)

    def insert(self, sig):
        keys = [(i, sig[i * self.rows:(i + 1) * self.rows].tobytes()) for i in range(self.bands)]
        checked = set()
        for key in keys:
            for other in self.buckets.get(key, ()):
                if other not in checked:
                    checked.add(other)
                    if np.mean(self.signatures[other] == sig) >= self.threshold:
                        return False
        idx = len(self.signatures)
        self.signatures.append(sig)
        for key in keys:
            self.buckets.setdefault(key, []).append(idx)
        return True


def main():
    config_path, out_dir = sys.argv[1], sys.argv[2]
    base = os.path.dirname(os.path.abspath(config_path))
    with open(config_path, "rb") as fh:
        cfg = tomllib.load(fh)
    ing = cfg.get("ingest", {})
    min_chars, max_chars = ing.get("min_chars", 32), ing.get("max_chars", 200_000)
    shard_rows, batch_rows = ing.get("shard_rows", 4096), ing.get("batch_rows", 1024)
    mh = ing.get("dedup", {}).get("minhash", {})
    index = MinHashIndex(mh.get("num_perm", 128), mh.get("bands", 16), mh.get("threshold", 0.8), mh.get("ngram", 5))
    tokenizer = Tokenizer.from_file(os.path.join(base, cfg["tokenizer"]["path"]))
    exact = set()
    schema = pa.schema([
        ("doc_id", pa.uint64()), ("source", pa.dictionary(pa.int32(), pa.utf8())), ("split", pa.utf8()),
        ("tokens", pa.list_(pa.uint32())), ("n_tokens", pa.uint32()),
    ])
    started = time.perf_counter()
    totals = {"bytes_read": 0, "documents": 0, "tokens": 0}
    for domain in cfg["domain"]:
        filters = dict(DEFAULT_FILTERS, **ing.get("filters", {}), **domain.get("filters", {}))
        rows, part = [], 0
        os.makedirs(os.path.join(out_dir, domain["name"]), exist_ok=True)

        def flush():
            nonlocal rows, part
            if not rows:
                return
            ids, texts = zip(*rows)
            encoded = tokenizer.encode_batch(list(texts), add_special_tokens=False)
            toks = [e.ids for e in encoded]
            totals["documents"] += len(toks)
            totals["tokens"] += sum(map(len, toks))
            table = pa.table({
                "doc_id": pa.array(ids, pa.uint64()),
                "source": pa.array([domain["name"]] * len(ids)).dictionary_encode(),
                "split": pa.array(["train"] * len(ids)),
                "tokens": pa.array(toks, pa.list_(pa.uint32())),
                "n_tokens": pa.array([len(t) for t in toks], pa.uint32()),
            }, schema=schema)
            pq.write_table(table, os.path.join(out_dir, domain["name"], f"part-{part:05d}.parquet"), compression="snappy")
            part += 1
            rows = []

        pending = []
        for source in domain["source"]:
            with gzip.open(os.path.join(base, source["path"]), "rt", encoding="utf-8") as fh:
                for line in fh:
                    text = json.loads(line)[source.get("text_column", "text")]
                    totals["bytes_read"] += len(text.encode())
                    text = text.strip().replace("\r\n", "\n")
                    if check(text, filters, min_chars, max_chars):
                        continue
                    normalized = " ".join(text.split()).lower()
                    digest = hashlib.blake2b(normalized.encode(), digest_size=16).digest()
                    if digest in exact:
                        continue
                    if not index.insert(index.signature(normalized)):
                        continue
                    exact.add(digest)
                    doc_id = int.from_bytes(hashlib.blake2b((source["path"] + "\0" + text).encode(), digest_size=8).digest(), "little")
                    pending.append((doc_id, text))
                    if len(pending) >= batch_rows:
                        rows.extend(pending)
                        pending = []
                        if len(rows) >= shard_rows:
                            flush()
        rows.extend(pending)
        flush()
    seconds = time.perf_counter() - started
    print(json.dumps({
        "peer": "python tokenizers+pyarrow+numpy",
        "seconds": seconds,
        "mb_per_second": totals["bytes_read"] / 1e6 / seconds,
        "tokens_per_second": totals["tokens"] / seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        **totals,
    }))


if __name__ == "__main__":
    main()
