"""Last-layer retraining on cached features: many linear heads trained at once by plain SGD.

A method turns (features, y, g, seed, options) into a `Plan`: which held-out examples a head sees (a subset,
or upsampling probabilities redrawn every epoch), their loss weights, and where the head starts. `fit` trains
any list of plans -- e.g. a grid of seeds x group ratios x balancing methods -- in ONE vectorized loop
(`fit_heads`), so adding a method is one function plus one REGISTRY line.

Training (paper Sec. 1 and App. B.2): the head is reinitialized with nn.Linear's default init from the head's
seed, then SGD with constant lr 1e-2, no momentum, no weight decay, batch 32, the final epoch is returned (no
model selection). The batch loss is sum_i w_i CE_i / (examples in the batch), i.e. `(ce * w).mean()` as in the
paper's code; weights from repro.balance have mean 1. Upsampling redraws n indices with replacement every
epoch (torch.multinomial with the head's generator), as the paper's WeightedRandomSampler does.

Methods (REGISTRY): llr (no balancing), dfr (group-balanced held-out set, Kirichenko et al. 2023), cbllr
(class-balanced, LaBonte et al. 2023), ratio (held-out set at group ratio r, paper Sec. 3.1) and afr
(Qiu et al. 2023: weights exp(-gamma p_true) times N / n_class as in AFR's code, head started at the ERM head with
an L2 pull lambda (||W - W0||^2 + ||b - b0||^2)). AFR's own code trains full-batch with sum-1 weights and gradient
clipping; we use the same minibatch SGD as LLR with the weights rescaled to mean 1 (full batch with sum-1
weights is the same loss), so that gamma = 0, lambda = 0 is exactly CB-LLR with upweighting from the ERM head.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from repro import balance as balancing



def _tensor(x, dtype) -> torch.Tensor:
    return x.to(dtype) if torch.is_tensor(x) else torch.as_tensor(np.asarray(x), dtype=dtype)


def init_head(d: int, n_classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """nn.Linear(d, n_classes) default init from a generator seeded with `seed` (= nn.Linear after
    torch.manual_seed(seed)): W (C, d), b (C,)."""
    gen = torch.Generator().manual_seed(int(seed))
    W = torch.nn.init.kaiming_uniform_(torch.empty(n_classes, d), a=math.sqrt(5), generator=gen)
    b = torch.nn.init.uniform_(torch.empty(n_classes), -1 / math.sqrt(d), 1 / math.sqrt(d), generator=gen)
    return W, b


def _orders(n_items: int, epochs: int, seed: int, probs=None):
    """Per epoch, the order (positions into a head's index list) in which one head visits its examples."""
    gen = torch.Generator().manual_seed(int(seed))
    for _ in range(epochs):
        if probs is None:
            yield torch.randperm(n_items, generator=gen)
        else:
            yield torch.multinomial(probs, n_items, replacement=True, generator=gen)


def _loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example loss: cross-entropy, or the logistic loss for a single logit (y in {0, 1})."""
    if logits.shape[-1] == 1:
        return F.binary_cross_entropy_with_logits(logits[..., 0], y.to(logits.dtype), reduction="none")
    return F.cross_entropy(logits, y, reduction="none")


def fit_head(features, y, subset, weights=None, *, n_classes: int, epochs: int, seed: int, lr: float = 1e-2,
             batch_size: int = 32, probs=None, init=None, l2_to_init: float = 0.0):
    """Reference single-head trainer: nn.Linear + torch.optim.SGD, same batch order as `fit_heads`.

    features (n, d), y (n,), subset (k,) indices, weights/probs (k,) aligned with subset -> W (C, d), b (C,).
    """
    x, y = _tensor(features, torch.float32), _tensor(y, torch.int64)
    subset = _tensor(subset, torch.int64)
    w = torch.ones(len(subset)) if weights is None else _tensor(weights, torch.float32)
    W0, b0 = init if init is not None else init_head(x.shape[1], n_classes, seed)
    W0, b0 = _tensor(W0, torch.float32), _tensor(b0, torch.float32)
    head = torch.nn.Linear(x.shape[1], n_classes)
    with torch.no_grad():
        head.weight.copy_(W0)
        head.bias.copy_(b0)
    opt = torch.optim.SGD(head.parameters(), lr=lr)
    p = None if probs is None else _tensor(probs, torch.float64)
    for order in _orders(len(subset), epochs, seed, p):
        for pos in order.split(batch_size):
            rows = subset[pos]
            loss = (_loss(head(x[rows]), y[rows]) * w[pos]).mean()
            if l2_to_init:
                loss = loss + l2_to_init * ((head.weight - W0).square().sum() + (head.bias - b0).square().sum())
            opt.zero_grad()
            loss.backward()
            opt.step()
    return head.weight.detach().clone(), head.bias.detach().clone()


def _per_head(value, H: int, name: str) -> list:
    if value is None or not isinstance(value, (list, tuple)):
        return [value] * H
    if len(value) != H:
        raise ValueError(f"{name} has {len(value)} entries but there are {H} heads (one per subset)")
    return list(value)


def _schedule(orders, subsets, weights, y, B: int, labels_dtype):
    """One epoch's batches of H heads: rows (S, H, B) into features, labels (S, H, B), coef = w / count
    (S, H, B) with 0 on padding; S = the most batches of any head, shorter heads padded at the end (rows 0,
    labels y[0] inside a head's last batch and 0 after it). Heads with equally many examples are cut into
    batches together (one gather for all of them)."""
    S, H = max(math.ceil(len(o) / B) for o in orders), len(orders)
    rows = torch.zeros(S, H, B, dtype=torch.int64)
    labels = torch.zeros(S, H, B, dtype=labels_dtype)
    coef = torch.zeros(S, H, B)
    by_size = {}
    for h, pos in enumerate(orders):
        by_size.setdefault(len(pos), []).append(h)
    for k, heads in by_size.items():
        nb, m = math.ceil(k / B), len(heads)
        at = (torch.stack([orders[h] for h in heads]) + k * torch.arange(m)[:, None]).view(-1)  # into the cats
        r = F.pad(torch.cat([subsets[h] for h in heads])[at].view(m, k), (0, nb * B - k)).view(m, nb, B)
        w = F.pad(torch.cat([weights[h] for h in heads])[at].view(m, k), (0, nb * B - k)).view(m, nb, B)
        count = torch.full((nb, 1), float(B))
        count[-1] = k - (nb - 1) * B
        index = torch.tensor(heads)
        rows[:nb, index] = r.transpose(0, 1)
        labels[:nb, index] = y[r].transpose(0, 1).to(labels_dtype)
        coef[:nb, index] = (w / count).transpose(0, 1)
    return rows, labels, coef


def _spans(active: list[int], chunk: int, B: int, d: int, budget: int = 2 << 20) -> list[list[tuple[int, int]]]:
    """Per step, the active heads [:active[s]] cut into spans (a, z) of whole chunks: a span's gathered rows
    (at most `budget` bytes, one chunk at least) stay in cache between its two products."""
    per_span = chunk * max(1, budget // (chunk * B * d * 4))
    return [[(a, min(a + per_span, k)) for a in range(0, k, per_span)] for k in active]


def _sgd_step(x, W, b, a: int, z: int, chunk: int, bufs, work, lr: float, pull=None):
    """step(rows, labels, coef): one in-place SGD step of the heads W[a:z] (h, C, d), b[a:z] (h, C) on one step's
    batches of all H heads: rows (H * B,) into x, labels (H, 1, B) (float; class ids if C > 2), coef (H, 1, B).

    Manual gradient of sum_i coef_i loss_i: d/d logits = (softmax - onehot) * coef (sigmoid - y for C == 1).
    For C == 2 the two rows of that gradient are opposite (softmax(z)_1 = sigmoid(z_1 - z_0)), so one
    product with the weight difference and one with the residual replace two (the matmuls dominate the step).
    pull = (W0, b0, lam2) adds the gradient of lam (||W - W0||^2 + ||b - b0||^2), lam2 = 2 lam (H,).
    The rows of each `chunk` heads are gathered once into its own buffer (bufs) and both products run chunk by
    chunk (the same torch.bmm calls as one chunk at a time); the elementwise work runs once for the span. Every
    view is made here, once, so that a step is little more than its arithmetic (work: preallocated outputs).
    """
    C, B = W.shape[1], bufs[0].shape[0] // chunk
    Wa, ba = W[a:z], b[a:z]
    act, g, gb, grad_W, grad_b, minus_one, tmp_W, tmp_b = (t[a:z] for t in work)
    chunks = []  # per chunk of heads lo:hi: its rows' span in `rows`, its gather buffer, that as (h, B, d), lo-a:hi-a
    for (lo, hi), buf in zip([(lo, min(lo + chunk, z)) for lo in range(a, z, chunk)], bufs):
        out = buf[: (hi - lo) * B]
        chunks.append((lo * B, hi * B, out, out.view(hi - lo, B, -1), slice(lo - a, hi - a)))
    if C == 2:
        Wd, bd = act.new_empty(z - a, 1, Wa.shape[2]), act.new_empty(z - a, 1)
        W1, W0_, b1, b0_, bd3 = Wa[:, 1:], Wa[:, :1], ba[:, 1:], ba[:, :1], bd[:, :, None]
        Wd_k = [(Wd[k], xb.transpose(1, 2), act[k]) for *_, xb, k in chunks]
    else:
        W_k = [(Wa[k], xb.transpose(1, 2), act[k]) for *_, xb, k in chunks]
        b3 = ba[:, :, None]
    g_k = [(k, act[k], xb, g[k]) for *_, xb, k in chunks]
    neg = (-g, -gb)  # buffers for the negated gradient (C == 2)
    whole = a == 0 and z == W.shape[0]  # a span of all heads takes the step's labels and coef as they are
    if pull is not None:
        W0, b0, lam2 = (t[a:z] for t in pull)
        lam2_W, lam2_b = lam2[:, None, None], lam2[:, None]

    def step(rows, labels, coef):
        for r0, r1, out, _, _ in chunks:
            torch.index_select(x, 0, rows[r0:r1], out=out)
        labels, coef = (labels, coef) if whole else (labels[a:z], coef[a:z])
        if C == 2:  # logit difference z (h, 1, B) and residual sigmoid(z) - y
            torch.sub(W1, W0_, out=Wd)
            for w_k, xbT, act_k in Wd_k:
                torch.bmm(w_k, xbT, out=act_k)
            torch.sub(b1, b0_, out=bd)
            act.add_(bd3)
            r = act.sigmoid_().sub_(labels)
        else:  # logits (h, C, B); residual sigmoid - y (C == 1) or softmax - onehot
            for w_k, xbT, act_k in W_k:
                torch.bmm(w_k, xbT, out=act_k)
            act.add_(b3)
            r = act.sigmoid_().sub_(labels) if C == 1 else torch.softmax(act, dim=1).scatter_add_(1, labels, minus_one)
        r.mul_(coef)
        for k, r_k, xb, g_out in g_k:
            torch.bmm(r_k if C <= 2 else r[k], xb, out=g_out)                                   # (h, 1 or C, d)
        torch.sum(r, 2, out=gb)
        if C == 2:
            dW = torch.cat([torch.neg(g, out=neg[0]), g], 1, out=grad_W)
            db = torch.cat([torch.neg(gb, out=neg[1]), gb], 1, out=grad_b)
        else:
            dW, db = g, gb
        if pull is not None:
            dW.add_(torch.sub(Wa, W0, out=tmp_W).mul_(lam2_W))
            db.add_(torch.sub(ba, b0, out=tmp_b).mul_(lam2_b))
        Wa.sub_(dW, alpha=lr)
        ba.sub_(db, alpha=lr)

    return step


def fit_heads(features, y, subsets, weights=None, *, n_classes: int, epochs: int, seeds, lr: float = 1e-2,
              batch_size: int = 32, probs=None, init=None, l2_to_init=0.0, record_steps=None, chunk: int = 32,
              device=None):
    """Train H heads at once by SGD on softmax cross-entropy (logistic loss if n_classes == 1).

    features (n, d); y (n,); subsets: H index arrays into features; weights, probs: None or H arrays
    aligned with subsets (loss weights; per-epoch sampling probabilities); seeds: H ints (init and batch
    order); init: None, one (W0 (C, d), b0 (C,)) for all heads, or a list of H such pairs/None;
    l2_to_init: float or H floats. Returns W (H, C, d), b (H, C); with record_steps (sorted step counts,
    all heads equally long) returns W (S, H, C, d), b (S, H, C) after each recorded number of steps.
    Each head takes exactly its own batches; a head whose epoch has fewer batches waits (no step).
    Gradients are written by hand: d loss / d logits = (softmax - onehot) * w / batch count; heads are
    gathered and multiplied `chunk` at a time (chunk * batch_size * d floats stay in cache), and the
    elementwise work of a step runs once for many chunks (see _spans, _sgd_step). The chunk is an execution
    detail: the results are the same bits for any chunk (tests/test_last_layer_bitwise.py).
    Runs on `device` (default: the process's, repro.device); the returned tensors are on the CPU.
    """
    from repro import device as devices

    dev = devices.resolve() if device is None else torch.device(device)
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
    # Sort heads by batches per epoch (descending): the heads active at step s are then a prefix [:k].
    n_batches = [math.ceil(len(s) / B) for s in subsets]
    rank = sorted(range(H), key=lambda h: -n_batches[h])
    W = torch.stack([starts[h][0] for h in rank]).reshape(H, C, d).to(dev).clone()
    b = torch.stack([starts[h][1] for h in rank]).reshape(H, C).to(dev).clone()
    lam = torch.tensor([float(v) for v in _per_head(l2_to_init, H, "l2_to_init")])[rank].to(dev)
    pull = (W.clone(), b.clone(), 2 * lam) if bool((lam != 0).any()) else None
    S = max(n_batches)
    iters = [_orders(len(subsets[h]), epochs, seeds[h], probs[h]) for h in rank]
    record = sorted(set(record_steps)) if record_steps is not None else None
    if record is not None and len(set(n_batches)) > 1:
        raise ValueError("record_steps needs heads with equally many batches per epoch (same subset sizes)")
    # Buffers and the step of each span of heads, made once (see _spans, _sgd_step).
    chunk = min(chunk, H)
    spans = _spans([sum(n_batches[h] > s for h in rank) for s in range(S)], chunk, B, d)
    longest = max(z - a for step_spans in spans for a, z in step_spans)
    bufs = [torch.empty(chunk * B, d, device=dev) for _ in range(math.ceil(longest / chunk))]  # one per chunk of a span
    Cg = 1 if C == 2 else C  # rows of the gradient that is computed (C == 2: one, see _sgd_step)
    work = [torch.empty(H, Cg, B, device=dev), torch.empty(H, Cg, d, device=dev), torch.empty(H, Cg, device=dev),
            torch.empty(H, C, d, device=dev), torch.empty(H, C, device=dev), torch.full((H, 1, B), -1.0, device=dev),
            torch.empty(H, C, d, device=dev), torch.empty(H, C, device=dev)]
    steps = {span: _sgd_step(x, W, b, *span, chunk, bufs, work, lr, pull) for sp in spans for span in sp}
    spans = [[steps[span] for span in sp] for sp in spans]
    labels_dtype = torch.float32 if C <= 2 else torch.int64  # the logistic losses take float targets
    snaps_W, snaps_b, step = [], [], 0
    if record and record[0] == 0:
        snaps_W.append(W.clone()), snaps_b.append(b.clone())
    for _ in range(epochs):
        rows, labels, coef = _schedule([next(it) for it in iters], [subsets[h] for h in rank],
                                       [weights[h] for h in rank], y, B, labels_dtype)
        rows, labels, coef = rows.view(S, H * B).to(dev), labels[:, :, None].to(dev), coef[:, :, None].to(dev)
        for s in range(S):
            for span_step in spans[s]:
                span_step(rows[s], labels[s], coef[s])
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


# ---------------------------------------------------------------- methods


@dataclass(frozen=True)
class Plan:
    """What one head trains on: subset (k,) indices (repeats allowed), weights (k,) mean 1 or None, probs (k,)
    per-epoch sampling probabilities or None, init (W0, b0) or None (fresh nn.Linear init), L2 pull to init."""

    subset: np.ndarray
    seed: int
    weights: np.ndarray | None = None
    probs: np.ndarray | None = None
    init: tuple | None = None
    l2_to_init: float = 0.0


def _balanced(keys, balance: str, seed: int) -> Plan:
    if balance not in balancing.METHODS:
        raise ValueError(f"unknown balance {balance!r}; choose one of {', '.join(balancing.METHODS)}")
    everyone = np.arange(len(keys))
    if balance == "subsetting":
        return Plan(balancing.subsample(keys, seed), seed)
    if balance == "upsampling":
        return Plan(everyone, seed, probs=balancing.inverse_count_probs(keys))
    return Plan(everyone, seed, weights=balancing.upweight(keys))


def llr(features, y, g, seed: int) -> Plan:
    """LLR: the whole held-out set, no balancing."""
    return Plan(np.arange(len(y)), seed)


def dfr(features, y, g, seed: int, balance: str = "subsetting") -> Plan:
    """DFR (Kirichenko et al. 2023): group-balanced held-out set by subsetting, upsampling or upweighting g."""
    return _balanced(np.asarray(g), balance, seed)


def cbllr(features, y, g, seed: int, balance: str = "subsetting") -> Plan:
    """CB-LLR (LaBonte et al. 2023): class-balanced held-out set by subsetting, upsampling or upweighting y."""
    return _balanced(np.asarray(y), balance, seed)


def ratio(features, y, g, seed: int, r: float = 1.0, balance: str = "upsampling", minority=None) -> Plan:
    """Held-out set at group ratio r (paper Sec. 3.1): a subset, or upsampling (the paper's LLR choice)."""
    if balance == "subsetting":
        return Plan(balancing.group_ratio_subset(y, g, r, seed, minority), seed)
    if balance == "upsampling":
        return Plan(np.arange(len(y)), seed, probs=balancing.group_ratio_probs(y, g, r, minority))
    raise ValueError(f"unknown balance {balance!r} for ratio; choose one of subsetting, upsampling")


def p_true(features, y, weight, bias) -> np.ndarray:
    """Probability the head (W (C, d), b (C,)) gives the true class: (n,) float64 (sigmoid when C == 1)."""
    logits = _tensor(features, torch.float64) @ _tensor(weight, torch.float64).T + _tensor(bias, torch.float64)
    y = _tensor(y, torch.int64)
    if logits.shape[1] == 1:
        p1 = torch.sigmoid(logits[:, 0])
        return torch.where(y == 1, p1, 1 - p1).numpy()
    return torch.softmax(logits, 1).gather(1, y[:, None])[:, 0].numpy()


def afr_weights(p_true, y, gamma: float) -> np.ndarray:
    """AFR weights as AFR's released code builds them (Qiu et al. 2023; AndPotap/afr, train_embeddings.py with
    losses.get_exp_weights, supervised_utils.rebalance_weights and normalize_weights): w_i = exp(-gamma p_i),
    multiplied by N / n_{y_i} (N examples, n_c of class c), normalized to sum 1: (n,) -> (n,).

    A class keeps its exp(-gamma p) mass times N / n_c, so a class the ERM head gets wrong receives more total
    weight than one it gets right; at gamma = 0 every class has the same total (class balancing).
    """
    p, y = np.asarray(p_true, dtype=np.float64), np.asarray(y)
    if gamma < 0:
        raise ValueError(f"AFR's gamma must be >= 0, got {gamma}")
    _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    w = np.exp(-gamma * p) * (len(y) / counts[inverse])
    return w / w.sum()


def afr(features, y, g, seed: int, erm_head=None, gamma: float = 0.0, l2: float = 0.0) -> Plan:
    """AFR: weights afr_weights(p_true of the ERM head) rescaled to mean 1, start at the ERM head, L2 pull l2."""
    if erm_head is None:
        raise ValueError("afr needs erm_head=(W0, b0), the ERM model's last layer")
    w = afr_weights(p_true(features, y, *erm_head), y, gamma) * len(y)
    return Plan(np.arange(len(y)), seed, weights=w, init=tuple(erm_head), l2_to_init=l2)


REGISTRY = {"llr": llr, "dfr": dfr, "cbllr": cbllr, "ratio": ratio, "afr": afr}
SOLVED = {"dfr_l1": "repro.dfr_l1:fit"}  # heads fit by their own solver, not SGD on a Plan (repro.heads.fit_batch)


def plan(features, y, g, spec: dict) -> Plan:
    """The Plan of one spec {"method": name, "seed": int, **method options}."""
    spec = dict(spec)
    name = spec.pop("method", None)
    if name not in REGISTRY:
        raise ValueError(f"unknown last-layer method {name!r}; choose one of {', '.join(REGISTRY)}")
    return REGISTRY[name](features, y, g, **spec)


def fit(features, y, g, specs, *, n_classes: int, epochs: int, lr: float = 1e-2, batch_size: int = 32, device=None):
    """Train one head per spec (e.g. a grid of seeds x ratios x methods) in one fit_heads call.

    features (n, d), y, g (n,) of the held-out set; specs: list of {"method", "seed", **options}.
    Returns W (H, C, d), b (H, C) in the order of specs.
    """
    plans = [plan(features, y, g, s) for s in specs]
    return fit_heads(features, y, [p.subset for p in plans], [p.weights for p in plans], n_classes=n_classes,
                     epochs=epochs, seeds=[p.seed for p in plans], lr=lr, batch_size=batch_size,
                     probs=[p.probs for p in plans], init=[p.init for p in plans],
                     l2_to_init=[p.l2_to_init for p in plans], device=device)


def sgd_path(features, y, steps, *, seeds=(0,), lr: float = 1e-3, batch_size: int = 32, n_classes: int = 1):
    """Unregularized logistic-loss LLR (paper Fig. 3) recorded after the given numbers of SGD steps.

    features (n, d), y (n,) in {0, 1}; steps: increasing step counts (0 = the initialization).
    Returns W (S, H, C, d), b (S, H, C) for H = len(seeds) heads on the whole set.
    """
    steps = sorted(set(int(s) for s in steps))
    epochs = max(1, math.ceil(steps[-1] / math.ceil(len(y) / batch_size)))
    everyone = np.arange(len(y))
    return fit_heads(features, y, [everyone] * len(seeds), n_classes=n_classes, epochs=epochs, seeds=list(seeds),
                     lr=lr, batch_size=batch_size, record_steps=steps)
