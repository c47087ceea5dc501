"""Time the batched last-layer trainer against its floor: gathering each head's batch rows and two matrix products.

    python benchmarks/last_layer.py [--heads 75 --epochs 20 --n 993 9933 --d 64 384 1280 --threads 1
                                     --baseline-heads 0]

For every feature matrix (n, d) of random fp32 features (n: the CelebA held-out set of the cpu twin, 993, and
of the real dataset, 9933; d: the cpu profile's small models (64), MiniLM (384), EfficientNet-Lite0 (1280)),
one process run measures

- the floor: a loop that does nothing but what one head-step of a two-class head cannot avoid -- gather the
  head's 32 feature rows (torch.index_select into a preallocated buffer) and the two matrix products (logit
  difference = w @ x_b^T, gradient = r @ x_b) -- head after head, step after step, with row indices drawn
  beforehand in the trainer's pattern (a fresh permutation of the held-out set per head and epoch);
- the same work batched over chunks of heads (one gather for the chunk, two torch.bmm), for reference;
- repro.last_layer.fit_heads on a grid of llr, cbllr and dfr heads (upsampling and upweighting, every head on
  the whole held-out set), per head-step, and its ratio to the floor (issue 12 asks for <= 1.3).

With --baseline-heads K > 0 it also times the per-head PyTorch loop (repro.last_layer.fit_head: nn.Linear +
torch.optim.SGD, same batch order) on K heads for --baseline-epochs epochs.

Times are the process's CPU time (time.process_time; one torch thread), so that other processes on a busy
machine do not count; on an idle machine they equal wall time. They still share caches and memory bandwidth
with whatever else runs: compare numbers from one run, and quote its load average.
"""
from __future__ import annotations

import argparse
import os
import time

import torch

from repro import last_layer

METHODS = [dict(method="llr"), dict(method="cbllr", balance="upsampling"), dict(method="cbllr", balance="upweighting"),
           dict(method="dfr", balance="upsampling"), dict(method="dfr", balance="upweighting")]


def _rows(n: int, heads: int, epochs: int, B: int, seed: int = 0) -> torch.Tensor:
    """(steps, heads, B) row indices: per head and epoch a permutation of range(n), cut into batches of B (the
    last, short batch of each epoch is dropped so that all batches are full)."""
    gen = torch.Generator().manual_seed(seed)
    nb = n // B
    per_epoch = [torch.stack([torch.randperm(n, generator=gen)[: nb * B].view(nb, B) for _ in range(heads)], 1)
                 for _ in range(epochs)]
    return torch.cat(per_epoch).contiguous()


def floor(x: torch.Tensor, rows: torch.Tensor) -> float:
    """Seconds per head-step of the minimal loop: per head, index_select its B rows, then two torch.mm."""
    S, H, B = rows.shape
    d = x.shape[1]
    xb, w, z, g = torch.empty(B, d), torch.randn(1, d), torch.empty(1, B), torch.empty(1, d)
    t = time.process_time()
    for s in range(S):
        for h in range(H):
            torch.index_select(x, 0, rows[s, h], out=xb)
            torch.mm(w, xb.T, out=z)
            torch.mm(z, xb, out=g)
    return (time.process_time() - t) / (S * H)


def floor_batched(x: torch.Tensor, rows: torch.Tensor, chunk: int) -> float:
    """Seconds per head-step of the same work for `chunk` heads at a time: one index_select, two torch.bmm."""
    S, H, B = rows.shape
    d = x.shape[1]
    buf, w = torch.empty(chunk * B, d), torch.randn(chunk, 1, d)
    z, g = torch.empty(chunk, 1, B), torch.empty(chunk, 1, d)
    t = time.process_time()
    for s in range(S):
        for lo in range(0, H, chunk):
            hi = min(lo + chunk, H)
            k = hi - lo
            xb = torch.index_select(x, 0, rows[s, lo:hi].reshape(-1), out=buf[: k * B]).view(k, B, d)
            torch.bmm(w[:k], xb.transpose(1, 2), out=z[:k])
            torch.bmm(z[:k], xb, out=g[:k])
    return (time.process_time() - t) / (S * H)


def batched(features, y, plans, epochs: int, B: int, **opts) -> tuple[float, int]:
    """(seconds per head-step, head-steps) of repro.last_layer.fit_heads on the plans."""
    steps = sum(-(-len(p.subset) // B) for p in plans) * epochs
    t = time.process_time()
    last_layer.fit_heads(features, y, [p.subset for p in plans], [p.weights for p in plans], n_classes=2,
                         epochs=epochs, seeds=[p.seed for p in plans], probs=[p.probs for p in plans],
                         batch_size=B, device="cpu", **opts)
    return (time.process_time() - t) / steps, steps


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--heads", type=int, default=75)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--n", type=int, nargs="+", default=[993, 9933])
    p.add_argument("--d", type=int, nargs="+", default=[64, 384, 1280])
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--chunk", type=int, default=8, help="heads per chunk of the batched floor")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--baseline-heads", type=int, default=0)
    p.add_argument("--baseline-epochs", type=int, default=2)
    args = p.parse_args(argv)
    bad = [f"--{k} {v}" for k, v in (("heads", args.heads), ("epochs", args.epochs), ("batch-size", args.batch_size),
                                       ("chunk", args.chunk), ("threads", args.threads)) if v < 1]
    bad += [f"--n {n}" for n in args.n if n < args.batch_size] + [f"--d {d}" for d in args.d if d < 1]
    if bad:
        p.error(f"{', '.join(bad)}: needs a positive number (and n >= the batch size)")
    torch.set_num_threads(args.threads)
    B = args.batch_size
    print(f"{args.heads} heads x {args.epochs} epochs, batch {B}, torch threads {args.threads}, "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"{'n':>6} {'d':>5} {'floor us':>9} {'floor/chunk us':>15} {'fit_heads us':>13} {'ratio':>6}  per head-step")
    out = []
    for n in args.n:
        for d in args.d:
            gen = torch.Generator().manual_seed(n * 10_000 + d)
            features = torch.randn(n, d, generator=gen)
            y = torch.randint(0, 2, (n,), generator=gen)
            g = 2 * y + torch.randint(0, 2, (n,), generator=gen)
            specs = [{**METHODS[h % len(METHODS)], "seed": h // len(METHODS)} for h in range(args.heads)]
            plans = [last_layer.plan(features, y, g, s) for s in specs]
            rows = _rows(n, args.heads, args.epochs, B)
            # Warm up every code path (lazy initialization inside torch) before timing.
            floor(features, rows[:2]), floor_batched(features, rows[:2], args.chunk)
            batched(features, y, plans[:3], 1, B)
            fl, flc = floor(features, rows), floor_batched(features, rows, args.chunk)
            bt, steps = batched(features, y, plans, args.epochs, B)
            row = dict(n=n, d=d, floor_us=fl * 1e6, floor_chunk_us=flc * 1e6, fit_heads_us=bt * 1e6,
                       ratio=bt / fl, head_steps=steps)
            print(f"{n:>6} {d:>5} {fl * 1e6:>9.2f} {flc * 1e6:>15.2f} {bt * 1e6:>13.2f} {bt / fl:>6.2f}", flush=True)
            if args.baseline_heads > 0:
                k, e = min(args.baseline_heads, args.heads), min(args.baseline_epochs, args.epochs)
                last_layer.fit_head(features, y, plans[0].subset[:B], n_classes=2, epochs=1, seed=0)  # warm-up
                t = time.process_time()
                for pl in plans[:k]:
                    last_layer.fit_head(features, y, pl.subset, pl.weights, n_classes=2, epochs=e, seed=pl.seed,
                                        probs=pl.probs, batch_size=B)
                per = (time.process_time() - t) / (k * e * -(-n // B))
                row["fit_head_us"] = per * 1e6
                print(f"{'':>13} per-head fit_head (nn.Linear + SGD): {per * 1e6:.1f} us per head-step")
            out.append(row)
    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return out


if __name__ == "__main__":
    main()
