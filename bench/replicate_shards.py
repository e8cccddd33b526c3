"""Writes a shard directory holding N replicas of another: every shard file N times, each copy's
documents with new ids (replica 0 keeps the originals), and a manifest with the files' sizes,
checksums and counts, so `mixlab` opens it as it opens an ingested corpus N times the size.

    python bench/replicate_shards.py <source shards> <target shards> <N>

Tokenizing the real corpus a hundred times would take most of an hour on 2 cores and give the
same documents (ingest's deduplication would then drop every copy); the replicas differ only in
their ids, which is what the sampler and the cache see of a document besides its tokens.
"""

import copy
import hashlib
import json
import os
import shutil
import sys

import pyarrow as pa
import pyarrow.parquet as pq

MASK = (1 << 64) - 1


def new_id(doc_id: int, replica: int) -> int:
    """SplitMix64 of the id and the replica: distinct ids for distinct replicas."""
    z = (doc_id + replica * 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def replicate(source: str, target: str, n: int) -> None:
    manifest = json.load(open(os.path.join(source, "manifest.json")))
    staging = target + ".partial"
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    shutil.copy(os.path.join(source, manifest["tokenizer"]["file"]), staging)
    out = copy.deepcopy(manifest)
    for domain, written in zip(manifest["domains"], out["domains"]):
        os.makedirs(os.path.join(staging, domain["name"]))
        files = []
        for f in domain["files"]:
            table = pq.read_table(os.path.join(source, f["path"]))
            meta = pq.ParquetFile(os.path.join(source, f["path"])).metadata
            compression = meta.row_group(0).column(0).compression.lower()
            ids = table.column("doc_id").to_pylist()
            for r in range(n):
                column = pa.array([new_id(i, r) if r else i for i in ids], pa.uint64())
                at = table.schema.get_field_index("doc_id")
                copy_r = table.set_column(at, table.schema.field(at), column)
                stem = os.path.splitext(os.path.basename(f["path"]))[0]
                rel = f"{domain['name']}/{stem}-r{r:03d}.parquet"
                path = os.path.join(staging, rel)
                pq.write_table(copy_r, path, compression=compression,
                               use_compliant_nested_type=False)
                files.append({"path": rel, "rows": f["rows"], "tokens": f["tokens"],
                              "bytes": os.path.getsize(path), "sha256": sha256(path)})
        written["files"] = files
        for counts in written["splits"].values():
            counts["documents"] *= n
            counts["tokens"] *= n
        for key in ("records_read", "bytes_read", "documents", "tokens"):
            written["stats"][key] *= n
    out["inputs_hash"] = hashlib.sha256(f"{manifest['inputs_hash']} x{n}".encode()).hexdigest()
    with open(os.path.join(staging, "manifest.json"), "w") as f:
        json.dump(out, f, indent=2)
    shutil.rmtree(target, ignore_errors=True)
    os.rename(staging, target)


if __name__ == "__main__":
    replicate(sys.argv[1], sys.argv[2], int(sys.argv[3]))
