"""PyTorch peer of mixlab's trainer benchmark: the identical decoder, eager mode, on the CPU.

Same shapes and local/global layer pattern as mixlab's `small` preset (or any preset passed as JSON),
RMSNorm pre-norm, RoPE (rotate_half), grouped-query attention, sliding-window masks on local layers,
SwiGLU, tied embeddings, AdamW, global-norm clipping. Prints one JSON line with tokens/s.

    python bench/peers/torch_train.py --config '{"vocab_size": 8192, ...}' --batch 16 --seq 256 --steps 20
"""

import argparse
import json
import math
import resource
import time

import torch
import torch.nn.functional as F
from torch import nn


def global_layers(n_layers, every):
    """Evenly spaced global layers including the first and last (mixlab's rule)."""
    count = max(-(-n_layers // every), min(n_layers, 2))
    if count == 1:
        return {0}
    return {(j * (n_layers - 1) * 2 + (count - 1)) // (2 * (count - 1)) for j in range(count)}


class Rope:
    def __init__(self, head_dim, max_pos, theta):
        inv = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
        ang = torch.arange(max_pos, dtype=torch.float64)[:, None] * inv[None, :]
        self.cos, self.sin = ang.cos().float(), ang.sin().float()

    def apply(self, x, t):
        half = x.shape[-1] // 2
        cos, sin = self.cos[:t][None, None], self.sin[:t][None, None]
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class Block(nn.Module):
    def __init__(self, c, is_global):
        super().__init__()
        d, h, kv = c["d_model"], c["n_heads"], c["n_kv_heads"]
        self.h, self.kv, self.hd = h, kv, d // h
        self.is_global = is_global
        self.attn_norm = nn.RMSNorm(d, eps=1e-5)
        self.ffn_norm = nn.RMSNorm(d, eps=1e-5)
        self.wq = nn.Linear(d, h * self.hd, bias=False)
        self.wk = nn.Linear(d, kv * self.hd, bias=False)
        self.wv = nn.Linear(d, kv * self.hd, bias=False)
        self.wo = nn.Linear(h * self.hd, d, bias=False)
        self.w1 = nn.Linear(d, c["ffn_hidden"], bias=False)
        self.w3 = nn.Linear(d, c["ffn_hidden"], bias=False)
        self.w2 = nn.Linear(c["ffn_hidden"], d, bias=False)

    def forward(self, x, rope, global_mask, local_mask):
        b, t, _ = x.shape
        y = self.attn_norm(x)
        q = self.wq(y).view(b, t, self.h, self.hd).transpose(1, 2)
        k = self.wk(y).view(b, t, self.kv, self.hd).transpose(1, 2)
        v = self.wv(y).view(b, t, self.kv, self.hd).transpose(1, 2)
        q, k = rope.apply(q, t), rope.apply(k, t)
        rep = self.h // self.kv
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        mask = global_mask if self.is_global else local_mask
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.wo(a.transpose(1, 2).reshape(b, t, -1))
        y = self.ffn_norm(x)
        return x + self.w2(F.silu(self.w1(y)) * self.w3(y))


class Model(nn.Module):
    def __init__(self, c):
        super().__init__()
        g = global_layers(c["n_layers"], c["global_every"])
        self.embedding = nn.Embedding(c["vocab_size"], c["d_model"])
        self.layers = nn.ModuleList(Block(c, i in g) for i in range(c["n_layers"]))
        self.norm = nn.RMSNorm(c["d_model"], eps=1e-5)
        self.rope = Rope(c["d_model"] // c["n_heads"], c["max_seq_len"], c["rope_theta"])
        self.window = c["window"]
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, tokens):
        t = tokens.shape[1]
        i = torch.arange(t)
        causal = i[None, :] <= i[:, None]  # True = may attend (SDPA convention)
        local = causal & (i[:, None] - i[None, :] < self.window)
        x = self.embedding(tokens)
        for layer in self.layers:
            x = layer(x, self.rope, causal, local)
        return self.norm(x) @ self.embedding.weight.T


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True, help="model shape as JSON (mixlab's ModelConfig)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    c = json.loads(args.config)
    model = Model(c)
    decay = [p for n, p in model.named_parameters() if p.dim() == 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2 or "embedding" in n]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=3e-3, betas=(0.9, 0.95), eps=1e-8,
    )
    data = torch.randint(0, c["vocab_size"], (args.steps + args.warmup, args.batch, args.seq + 1))
    tokens_per_step = args.batch * args.seq
    start = None
    for step in range(args.steps + args.warmup):
        if step == args.warmup:
            start = time.perf_counter()
        batch = data[step]
        logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, c["vocab_size"]), batch[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    seconds = time.perf_counter() - start
    # Eval throughput: forward and per-token losses (what mixlab's evaluation computes), no autograd.
    with torch.no_grad():
        t0 = time.perf_counter()
        for step in range(args.steps):
            batch = data[step]
            logits = model(batch[:, :-1])
            F.cross_entropy(logits.reshape(-1, c["vocab_size"]), batch[:, 1:].reshape(-1), reduction="none")
        eval_seconds = time.perf_counter() - t0
    print(json.dumps({
        "peer": "pytorch-eager",
        "torch": torch.__version__,
        "threads": args.threads,
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_tokens_per_second": tokens_per_step * args.steps / seconds,
        "eval_tokens_per_second": tokens_per_step * args.steps / eval_seconds,
        "final_loss": float(loss),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "log_vocab": math.log(c["vocab_size"]),
    }))


if __name__ == "__main__":
    main()
