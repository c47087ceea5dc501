"""fit_heads gives the same bits as the trainer it replaced (a frozen copy below, as of issue 12's speed work).

The batched trainer was rewritten for speed (schedules cut for many heads at once, chunks of 32 heads whose
elementwise work runs once per span, views and outputs made once); only execution changed, so the heads kind
keeps its version in runs.KINDS. These tests pin that: any change that
alters one bit of a head must bump the kind's version instead of passing here.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from repro import last_layer

torch.set_num_threads(1)


# ------------------------------------------------------------ the reference: fit_heads before issue 12, verbatim
# (only: device fixed to the CPU, and last_layer's _tensor/init_head used from the module)

def _orders(n_items: int, epochs: int, seed: int, probs=None):
    gen = torch.Generator().manual_seed(int(seed))
    for _ in range(epochs):
        if probs is None:
            yield torch.randperm(n_items, generator=gen)
        else:
            yield torch.multinomial(probs, n_items, replacement=True, generator=gen)


def _per_head(value, H: int, name: str) -> list:
    if value is None or not isinstance(value, (list, tuple)):
        return [value] * H
    if len(value) != H:
        raise ValueError(f"{name} has {len(value)} entries but there are {H} heads (one per subset)")
    return list(value)


def _schedule(orders, subsets, weights, y, B: int, labels_dtype):
    S, H = max(math.ceil(len(o) / B) for o in orders), len(orders)
    rows = torch.zeros(S, H, B, dtype=torch.int64)
    labels = torch.zeros(S, H, B, dtype=labels_dtype)
    coef = torch.zeros(S, H, B)
    for h, (pos, subset, w) in enumerate(zip(orders, subsets, weights)):
        k, nb = len(pos), math.ceil(len(pos) / B)
        r = F.pad(subset[pos], (0, nb * B - k)).view(nb, B)
        count = torch.full((nb, 1), float(B))
        count[-1] = k - (nb - 1) * B
        rows[:nb, h], labels[:nb, h] = r, y[r]
        coef[:nb, h] = F.pad(w[pos], (0, nb * B - k)).view(nb, B) / count
    return rows, labels, coef


def _sgd_step(x, W, b, rows, labels, coef, lr: float, buf, pull=None) -> None:
    h, B = rows.shape
    xb = torch.index_select(x, 0, rows.reshape(-1), out=buf[: h * B]).view(h, B, -1)  # (h, B, d)
    if W.shape[1] == 2:
        z = torch.bmm(W[:, 1:] - W[:, :1], xb.transpose(1, 2)).add_((b[:, 1] - b[:, 0])[:, None, None])  # (h, 1, B)
        r = torch.sigmoid(z).sub_(labels[:, None, :].to(z.dtype)).mul_(coef[:, None, :])                # (h, 1, B)
        g, gb = torch.bmm(r, xb), r.sum(2)                                                             # (h, 1, d), (h, 1)
        grad_W, grad_b = torch.cat([-g, g], 1), torch.cat([-gb, gb], 1)
    else:
        logits = torch.bmm(W, xb.transpose(1, 2)).add_(b[:, :, None])                     # (h, C, B)
        if W.shape[1] == 1:
            grad = torch.sigmoid(logits).sub_(labels[:, None, :])
        else:
            minus_one = torch.full((h, 1, B), -1.0, device=W.device)
            grad = torch.softmax(logits, dim=1).scatter_add_(1, labels[:, None, :], minus_one)
        grad.mul_(coef[:, None, :])
        grad_W, grad_b = torch.bmm(grad, xb), grad.sum(2)                                   # (h, C, d), (h, C)
    if pull is not None:
        W0, b0, lam = pull
        grad_W.add_((W - W0) * (2 * lam[:, None, None]))
        grad_b.add_((b - b0) * (2 * lam[:, None]))
    W.sub_(grad_W, alpha=lr)
    b.sub_(grad_b, alpha=lr)


def reference_fit_heads(features, y, subsets, weights=None, *, n_classes: int, epochs: int, seeds, lr: float = 1e-2,
                        batch_size: int = 32, probs=None, init=None, l2_to_init=0.0, record_steps=None,
                        chunk: int = 8):
    _tensor, init_head = last_layer._tensor, last_layer.init_head
    dev = torch.device("cpu")
    x, y = _tensor(features, torch.float32).to(dev).contiguous(), _tensor(y, torch.int64).cpu()
    H, d, C, B = len(subsets), x.shape[1], n_classes, batch_size
    subsets = [_tensor(s, torch.int64) for s in subsets]
    if H == 0 or min(len(s) for s in subsets) == 0:
        raise ValueError("fit_heads needs at least one head and a non-empty index list for every head")
    weights = [torch.ones(len(s)) if w is None else _tensor(w, torch.float32)
               for s, w in zip(subsets, _per_head(weights, H, "weights"))]
    probs = [None if p is None else _tensor(p, torch.float64) for p in _per_head(probs, H, "probs")]
    seeds = _per_head(list(seeds), H, "seeds")
    inits = _per_head(init, H, "init") if isinstance(init, list) else [init] * H
    starts = [init_head(d, C, s) if i is None else (_tensor(i[0], torch.float32), _tensor(i[1], torch.float32))
              for s, i in zip(seeds, inits)]
    n_batches = [math.ceil(len(s) / B) for s in subsets]
    rank = sorted(range(H), key=lambda h: -n_batches[h])
    W = torch.stack([starts[h][0] for h in rank]).reshape(H, C, d).to(dev).clone()
    b = torch.stack([starts[h][1] for h in rank]).reshape(H, C).to(dev).clone()
    W0, b0 = W.clone(), b.clone()
    lam = torch.tensor([float(v) for v in _per_head(l2_to_init, H, "l2_to_init")])[rank].to(dev)
    use_l2 = bool((lam != 0).any())
    S = max(n_batches)
    active = torch.tensor([sum(n_batches[h] > s for h in rank) for s in range(S)])
    iters = [_orders(len(subsets[h]), epochs, seeds[h], probs[h]) for h in rank]
    record = sorted(set(record_steps)) if record_steps is not None else None
    if record is not None and len(set(n_batches)) > 1:
        raise ValueError("record_steps needs heads with equally many batches per epoch (same subset sizes)")
    snaps_W, snaps_b, step = [], [], 0
    buf = torch.empty(min(chunk, H) * B, d, device=dev)
    labels_dtype = torch.float32 if C == 1 else torch.int64
    if record and record[0] == 0:
        snaps_W.append(W.clone()), snaps_b.append(b.clone())
    for _ in range(epochs):
        rows, labels, coef = _schedule([next(it) for it in iters], [subsets[h] for h in rank],
                                       [weights[h] for h in rank], y, B, labels_dtype)
        rows, labels, coef = rows.to(dev), labels.to(dev), coef.to(dev)
        for s in range(S):
            for lo in range(0, int(active[s]), chunk):
                hi = min(lo + chunk, int(active[s]))
                _sgd_step(x, W[lo:hi], b[lo:hi], rows[s, lo:hi], labels[s, lo:hi], coef[s, lo:hi], lr, buf,
                          (W0[lo:hi], b0[lo:hi], lam[lo:hi]) if use_l2 else None)
            step += 1
            if record is not None and step in record:
                snaps_W.append(W.clone()), snaps_b.append(b.clone())
                if step == record[-1]:
                    break
        if record is not None and step >= record[-1]:
            break
    unrank = torch.tensor(rank).argsort()
    if record is not None:
        if len(snaps_W) != len(record):
            raise ValueError(f"only {step} steps were run; raise epochs to reach step {record[-1]}")
        return torch.stack(snaps_W)[:, unrank].cpu(), torch.stack(snaps_b)[:, unrank].cpu()
    return W[unrank].cpu(), b[unrank].cpu()


# ------------------------------------------------------------------------------------------------- tests

def _grid(n: int, d: int, n_classes: int, seed: int):
    """Features, labels and a mixed list of heads: shared and distinct row orders, subsets of several sizes,
    weights, upsampling, fresh and given inits, L2 pulls (AFR-like) and duplicates of the same head."""
    rng = np.random.default_rng(seed)
    x = torch.tensor(rng.normal(size=(n, d)), dtype=torch.float32)
    y = rng.integers(0, max(n_classes, 2), n)
    every = np.arange(n)
    w_up = rng.uniform(0.2, 3.0, n)
    erm = (torch.tensor(rng.normal(size=(n_classes, d)), dtype=torch.float32),
           torch.tensor(rng.normal(size=n_classes), dtype=torch.float32))
    heads = [  # (subset, weights, probs, seed, init, l2)
        (every, None, None, 0, None, 0.0),                     # llr
        (every, w_up, None, 0, None, 0.0),                     # upweighting: same rows as llr
        (every, w_up, None, 0, erm, 0.3),                      # AFR with a pull: same rows again
        (every, rng.uniform(0.5, 2, n), None, 0, erm, 0.0),    # AFR without a pull
        (every, None, rng.uniform(0.1, 1, n), 0, None, 0.0),   # upsampling
        (every, None, None, 1, None, 0.0),                     # another seed
        (every, None, None, 1, None, 0.0),                     # an exact duplicate
        (rng.choice(n, n // 3, replace=False), None, None, 2, None, 0.0),  # subsetting: fewer batches
        (rng.choice(n, n // 3, replace=False), None, None, 2, None, 0.0),  # same size and seed, other rows
        (rng.integers(0, n, n // 2 + 5), rng.uniform(0.5, 2, n // 2 + 5), None, 3, erm, 0.1),
        (np.arange(7), None, None, 4, None, 0.0),              # one short batch per epoch
    ]
    subsets, weights, probs, seeds, init, l2 = (list(c) for c in zip(*heads))
    return x, y, dict(subsets=subsets, weights=weights, probs=probs, seeds=seeds, init=init, l2_to_init=l2)


def _same(a, b) -> bool:
    return all(torch.equal(u, v) for u, v in zip(a, b))


@pytest.mark.parametrize("n,d,n_classes,seed", [(150, 12, 2, 0), (301, 64, 2, 1), (97, 7, 2, 2), (130, 384, 2, 3),
                                                (120, 12, 1, 4), (110, 9, 3, 5), (70, 1280, 2, 6)])
@pytest.mark.parametrize("batch_size", [32, 5])
def test_fit_heads_is_bitwise_the_reference(n, d, n_classes, seed, batch_size):
    x, y, grid = _grid(n, d, n_classes, seed)
    opts = dict(n_classes=n_classes, epochs=3, lr=0.05, batch_size=batch_size)
    want = reference_fit_heads(x, y, **grid, **opts)
    assert _same(last_layer.fit_heads(x, y, **grid, **opts, device="cpu"), want)
    assert (want[0] - torch.stack([last_layer.init_head(d, n_classes, 0)[0]])).abs().max() > 1e-3  # it trained


@pytest.mark.parametrize("chunk", [1, 3, 8, 16, 64])
def test_fit_heads_bits_do_not_depend_on_the_chunk(chunk):
    x, y, grid = _grid(200, 33, 2, 7)
    opts = dict(n_classes=2, epochs=2, lr=0.05, batch_size=16)
    assert _same(last_layer.fit_heads(x, y, **grid, **opts, chunk=chunk, device="cpu"),
                 reference_fit_heads(x, y, **grid, **opts))


def test_fit_heads_is_bitwise_the_reference_on_a_method_grid():
    rng = np.random.default_rng(8)
    x = torch.tensor(rng.normal(size=(260, 40)), dtype=torch.float32)
    y = rng.integers(0, 2, 260)
    g = 2 * y + rng.integers(0, 2, 260)
    erm_head = (torch.zeros(2, 40), torch.zeros(2))
    specs = [{"method": "llr"}, {"method": "dfr", "balance": "subsetting"}, {"method": "dfr", "balance": "upsampling"},
             {"method": "cbllr", "balance": "upweighting"}, {"method": "ratio", "r": 0.3},
             {"method": "afr", "gamma": 2.0, "l2": 0.1, "erm_head": erm_head},
             {"method": "afr", "gamma": 0.5, "l2": 0.0, "erm_head": erm_head}]
    plans = [last_layer.plan(x, y, g, {**s, "seed": k}) for s in specs for k in (0, 1)]
    grid = dict(subsets=[p.subset for p in plans], weights=[p.weights for p in plans], probs=[p.probs for p in plans],
                seeds=[p.seed for p in plans], init=[p.init for p in plans], l2_to_init=[p.l2_to_init for p in plans])
    assert _same(last_layer.fit_heads(x, y, **grid, n_classes=2, epochs=4, device="cpu"),
                 reference_fit_heads(x, y, **grid, n_classes=2, epochs=4))


def test_recorded_steps_are_bitwise_the_reference():
    x, y, _ = _grid(96, 12, 1, 9)
    y = (y > 0).astype(np.int64)
    opts = dict(n_classes=1, epochs=3, seeds=[0, 1, 1], lr=1e-2, record_steps=[0, 1, 4, 7])
    subsets = [np.arange(96)] * 3
    assert _same(last_layer.fit_heads(x, y, subsets, **opts, device="cpu"), reference_fit_heads(x, y, subsets, **opts))


@pytest.mark.parametrize("d,chunk", [(64, None), (1280, None), (1280, 4), (384, 5)])
def test_many_heads_in_several_chunks_and_spans_are_bitwise_the_reference(d, chunk):
    x, y, grid = _grid(90, d, 2, 10)
    many = {k: v * 4 + v[:1] for k, v in grid.items()}  # 45 heads: several chunks, and spans of several chunks
    many["seeds"] = list(range(45))
    opts = dict(n_classes=2, epochs=2, lr=0.05)
    got = last_layer.fit_heads(x, y, **many, **opts, device="cpu", **({} if chunk is None else {"chunk": chunk}))
    assert _same(got, reference_fit_heads(x, y, **many, **opts))
