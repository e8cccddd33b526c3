"""Checks mixlab's exports in the runtimes they are for, against `mixlab score`.

    tokens --gguf F --tokenizer T FILE...   llama.cpp's tokenization of every `text` of the JSONL
                                            files (optionally .gz) vs the shards' tokenizer.json
    llama --gguf F --scores S               llama.cpp's per-token losses on the token sequences of
                                            `mixlab score`'s output S vs mixlab's
    hf --dir D --scores S                   transformers' LlamaForCausalLM on an `export --format hf`
                                            directory, same comparison

Each prints one JSON object.
"""

import argparse
import gzip
import json
import sys

import numpy as np


def read_jsonl(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def token_ids(args):
    from llama_cpp import Llama
    from tokenizers import Tokenizer

    llm = Llama(model_path=args.gguf, vocab_only=True, verbose=False)
    shards = Tokenizer.from_file(args.tokenizer)
    texts = [r["text"] for path in args.files for r in read_jsonl(path)[: args.per_file or None]]
    differ = []
    tokens = 0
    for i, text in enumerate(texts):
        ours = shards.encode(text, add_special_tokens=False).ids
        theirs = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        tokens += len(ours)
        if ours != list(theirs):
            differ.append(i)
    return {"texts": len(texts), "tokens": tokens, "identical": len(texts) - len(differ),
            "differ": differ[:20]}


def compare(scores, losses_of):
    """Per-token and mean differences between mixlab's losses and another runtime's."""
    ours, theirs = [], []
    for record in scores:
        if len(record["tokens"]) < 2:
            continue
        ours.append(np.array(record["losses"], dtype=np.float64))
        theirs.append(losses_of(record["tokens"]))
    a, b = np.concatenate(ours), np.concatenate(theirs)
    return {
        "sequences": len(ours),
        "tokens": int(a.size),
        "mixlab_mean": float(a.mean()),
        "runtime_mean": float(b.mean()),
        "mean_relative_difference": float(abs(b.mean() - a.mean()) / a.mean()),
        "max_abs_token_difference": float(np.abs(a - b).max()),
        "mean_abs_token_difference": float(np.abs(a - b).mean()),
    }


def nll(logits, tokens):
    logits = logits.astype(np.float64)
    logp = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    return -logp[np.arange(len(tokens) - 1), tokens[1:]]


def without_repacking():
    """llama.cpp with its extra CPU buffer types off (weight repacking for AMX and interleaved
    kernels; llama-cli's `--no-repack`), which llama-cpp-python does not expose."""
    import llama_cpp
    import llama_cpp.llama as binding

    default = llama_cpp.llama_model_default_params

    def params():
        p = default()
        p.use_extra_bufts = False
        return p

    binding.llama_cpp.llama_model_default_params = params


def llama(args):
    import llama_cpp
    from llama_cpp import Llama

    if args.no_repack:
        without_repacking()
    scores = read_jsonl(args.scores)
    n_ctx = max(len(r["tokens"]) for r in scores)
    llm = Llama(model_path=args.gguf, logits_all=True, n_ctx=n_ctx, n_batch=n_ctx,
                n_threads=args.threads, verbose=False)

    def losses(tokens):
        llm.reset()
        llm.eval(tokens)
        return nll(np.array(llm.scores[: len(tokens)]), np.array(tokens))

    result = compare(scores, losses)
    result["runtime"] = f"llama.cpp (llama-cpp-python {llama_cpp.__version__})"
    result["repacking"] = not args.no_repack
    return result


def hf(args):
    import torch
    import transformers
    from transformers import LlamaForCausalLM

    torch.set_num_threads(args.threads)
    model = LlamaForCausalLM.from_pretrained(args.dir, torch_dtype=torch.float32).eval()

    def losses(tokens):
        with torch.no_grad():
            logits = model(torch.tensor([tokens])).logits[0].double().numpy()
        return nll(logits, np.array(tokens))

    result = compare(read_jsonl(args.scores), losses)
    result["runtime"] = f"transformers {transformers.__version__}, torch {torch.__version__}"
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("tokens")
    t.add_argument("--gguf", required=True)
    t.add_argument("--tokenizer", required=True)
    t.add_argument("--per-file", type=int, default=0, help="records read per file (0: all)")
    t.add_argument("files", nargs="+")
    l = sub.add_parser("llama")
    l.add_argument("--gguf", required=True)
    l.add_argument("--scores", required=True)
    l.add_argument("--threads", type=int, default=2)
    l.add_argument("--no-repack", action="store_true", help="weight repacking off (llama-cli -nr)")
    h = sub.add_parser("hf")
    h.add_argument("--dir", required=True)
    h.add_argument("--scores", required=True)
    h.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    run = {"tokens": token_ids, "llama": llama, "hf": hf}[args.command]
    json.dump(run(args), sys.stdout)
    print()


if __name__ == "__main__":
    main()
