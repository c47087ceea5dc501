"""Last-layer runs on cached ERM features: the "heads" kind (one retrained head) and the "svm" kind (Figure 3's
path of an unregularized LLR head towards the SVM direction), their configs and their compute functions.

Both kinds are registered in repro.runs.KINDS and computed by repro.sweep like ERM runs. Heads that read the
same ERM features with the same training settings are one unit of work: `fit_batch` trains them in one
vectorized call (repro.last_layer.fit) and hands back one compute per head.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from repro import hparams, runs


def sgd_steps(n: int, epochs: int, batch_size: int) -> int:
    """SGD steps of `epochs` passes over n examples in batches of batch_size (the last batch may be short)."""
    return epochs * math.ceil(n / batch_size)


# ------------------------------------------------------------------------------------- last-layer heads

def head_config(erm_id: str, spec: dict, dataset: str, profile: str, backbones: str = "", **hp) -> dict:
    """Config of one last-layer head: the ERM run it reads, the method spec (repro.last_layer.REGISTRY) and the
    last-layer training hyperparameters (repro.hparams.head of the profile and its `backbones` variant)."""
    llr = {**hparams.head(dataset, profile, backbones), **hp}
    return {"erm": erm_id, "spec": dict(spec), "epochs": llr["epochs"], "lr": llr["lr"],
            "batch_size": llr["batch_size"]}


def _evaluate_heads(f: dict, W, b, n_groups: int, test_weights=None) -> list[dict]:
    """Per head: test and held-out summaries, and per-group min/avg margins on the held-out set (its training set)."""
    from repro import metrics

    out = []
    for h in range(W.shape[0]):
        row = {}
        for split in ("heldout", "test"):
            x, y, g = f[f"features_{split}"], f[f"y_{split}"], f[f"g_{split}"]
            logits = x.double() @ W[h].double().T + b[h].double()
            weights = test_weights if split == "test" else None  # a twin's test split (repro.data)
            row.update({f"{split}_{k}": v for k, v in metrics.summarize(logits.argmax(1), y, g, n_groups,
                                                                        avg_weights=weights).items()})
        m = metrics.margins(f["features_heldout"], f["y_heldout"], W[h], b[h])
        gm = metrics.group_margins(m, f["g_heldout"].cpu().numpy(), n_groups)
        row["margin_min"] = [None if np.isnan(v) else float(v) for v in gm["min"]]
        row["margin_avg"] = [None if np.isnan(v) else float(v) for v in gm["avg"]]
        out.append(row)
    return out


def _store_of(workdir) -> runs.Store:
    """The store a run is being computed in (its work folder is <store>/<kind>/.tmp-...): it reads its ERM run there."""
    return runs.Store(Path(workdir).parent.parent)


def fit_batch(configs: list[dict], store=None) -> list:
    """Train the heads of `configs` (all reading one ERM run of `store` with the same epochs, lr and batch size)
    in one batched call on the process's device (repro.device) with the run thread count; return one
    compute(config, workdir) per config that writes its head.safetensors and returns its metrics."""
    import torch

    from repro import data, features, last_layer
    from repro import device as devices

    first = configs[0]
    with devices.run_threads():
        device = devices.resolve()
        erm_dir = runs.run_dir("erm", first["erm"], store)
        f = features.load(erm_dir)
        n_groups = len(data.group_names(features.metadata(erm_dir)["config"]["dataset"]))
        x, y, g = f["features_heldout"], f["y_heldout"], f["g_heldout"]
        head = (f["head_weight"], f["head_bias"])
        n_classes = int(head[0].shape[0])
        solved = [i for i, c in enumerate(configs) if c["spec"]["method"] in last_layer.SOLVED]
        sgd = [i for i in range(len(configs)) if i not in solved]
        W, b, extra = [None] * len(configs), [None] * len(configs), [{}] * len(configs)
        if sgd:
            specs = [{**c["spec"], **({"erm_head": head} if c["spec"]["method"] == "afr" else {})}
                     for c in (configs[i] for i in sgd)]
            Ws, bs = last_layer.fit(x, y.numpy(), g.numpy(), specs, n_classes=n_classes, epochs=first["epochs"],
                                    lr=first["lr"], batch_size=first["batch_size"], device=device)
            for k, i in enumerate(sgd):
                W[i], b[i] = Ws[k], bs[k]
        for i in solved:  # e.g. Kirichenko et al.'s DFR (repro.dfr_l1): its own solver on the same features
            spec = dict(configs[i]["spec"])
            solver = runs.import_function(last_layer.SOLVED[spec.pop("method")])
            W[i], b[i], extra[i] = solver(x, y, g, features_train=f["features_train"], n_classes=n_classes,
                                          n_groups=n_groups, **spec)
        W, b = torch.stack(W), torch.stack(b)
        on_device = {k: v.to(device) for k, v in f.items() if k.endswith(("_heldout", "_test"))}  # what is evaluated
        weights = f["test_weights"].numpy() if "test_weights" in f else None  # a twin's (repro.data)
        evaluated = [{**row, **more} for row, more in zip(_evaluate_heads(on_device, W.to(device), b.to(device),
                                                                          n_groups, weights), extra)]

    def writer(h: int, result: dict):
        def compute(_config, workdir):
            runs.save_safetensors(Path(workdir) / "head.safetensors", {"weight": W[h].contiguous(),
                                                                       "bias": b[h].contiguous()})
            return result
        return compute

    return [writer(h, result) for h, result in enumerate(evaluated)]


def compute_head(config: dict, workdir) -> dict:
    """The "heads" kind's compute for one head alone (a batch of one)."""
    return fit_batch([config], _store_of(workdir))[0](config, workdir)


# ------------------------------------------------------------------------------------------ SVM paths

def svm_config(erm_id: str, dataset: str, profile: str, factor: float, n_points: int, seed: int,
               backbones: str = "") -> dict:
    llr = hparams.head(dataset, profile, backbones)
    return {"erm": erm_id, "lr": 1e-3, "batch_size": llr["batch_size"], "llr_epochs": llr["epochs"],
            "factor": factor, "n_points": n_points, "seed": seed}


def svm_path(config: dict, workdir) -> dict:
    """The "svm" kind (Figure 3): direction error between an unregularized logistic-loss LLR head and the
    hard-margin SVM with a bias (paper Sec. 2.2) on the held-out features, over SGD steps.

    The SVM exists only where the held-out features are linearly separable (an LP decides): otherwise the
    run records separable = False and no direction errors (no soft-margin stand-in). test_pred_classes: per
    step, how many classes the LLR head predicts on the test set (1: a trivial head)."""
    from repro import device as devices
    from repro import features, last_layer, metrics

    with devices.run_threads():
        f = features.load(runs.run_dir("erm", config["erm"], _store_of(workdir)))
        x, y = f["features_heldout"], f["y_heldout"].numpy()
        standard = sgd_steps(len(y), config["llr_epochs"], config["batch_size"])
        shape = {"n_heldout": int(x.shape[0]), "dim": int(x.shape[1])}  # n <= dim + 1: separable by dimension
        last = int(config["factor"] * standard)
        steps = sorted({int(s) for s in np.geomspace(1, last, config["n_points"])})
        W, b = last_layer.sgd_path(x, y, steps, seeds=(config["seed"],), lr=config["lr"],
                                   batch_size=config["batch_size"], n_classes=1)
        # the path's last head, where it separates the held-out set, proves separability without the LP
        if not metrics.linearly_separable(x.numpy(), y, witnesses=[(W[-1, 0, 0].numpy(), float(b[-1, 0, 0]))]):
            return {"steps": steps, "direction_error": None, "standard_steps": standard, "separable": False,
                    "svm_bias": None, **shape, "test_pred_classes": None}
        theta_svm, b_svm = metrics.hard_margin_svm(x.numpy(), y, separable=True)
        errors = [metrics.direction_error(W[i, 0, 0].numpy(), theta_svm) for i in range(len(steps))]
        z = f["features_test"].double() @ W[:, 0, 0].double().T + b[:, 0, 0].double()  # (n_test, steps)
        classes = [len(np.unique((z[:, i] > 0).numpy())) for i in range(len(steps))]
    return {"steps": steps, "direction_error": errors, "standard_steps": standard, "separable": True,
            "svm_bias": b_svm, **shape, "test_pred_classes": classes}
