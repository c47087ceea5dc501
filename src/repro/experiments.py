"""The paper's experiments as run grids: each section builds its ERM and last-layer configs here, runs the
missing ones through the run store, and gets back tidy tables (one row per run) for its figures.

Run kinds: "erm" (repro.erm; features cached inside), "heads" (one last-layer head on cached held-out
features; grids of heads that share features are trained together by repro.last_layer.fit), "svm" (the
Figure 3 path of an unregularized LLR head compared with the SVM direction).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from repro import erm, hparams, runs, sweep

BALANCES = ("none", "subsetting", "upsampling", "upweighting")


# ------------------------------------------------------------------------------------------ ERM runs

def erm_config(dataset: str, profile: str, data_root: str, seed: int, **overrides) -> dict:
    return erm.default_config(dataset, profile, data_root=data_root, seed=seed, **overrides)


def run_erm(configs: list[dict], workers: int = 1, executor: str = "local", slurm: dict | None = None) -> list[str]:
    """Compute the missing ERM runs; return their run ids (in order)."""
    table = sweep.plan("erm", configs)
    print(f"erm: {len(table)} runs, {int(table['cached'].sum())} cached, {int((~table['cached']).sum())} to compute")
    sweep.run("erm", configs, executor=executor, workers=workers, slurm=slurm)
    return [runs.run_id("erm", c) for c in configs]


def _table(kind: str, configs: list[dict]) -> pd.DataFrame:
    """Configs and metrics of the given finished runs of `kind`, one row per config, in order."""
    ids = [runs.run_id(kind, c) for c in configs]
    return runs.load(kind, run_id=tuple(ids)).set_index("run_id").loc[ids].reset_index()


def erm_table(configs: list[dict]) -> pd.DataFrame:
    """Final metrics of the given (finished) ERM runs, one row each."""
    return _table("erm", configs)


# ------------------------------------------------------------------------------------- last-layer heads

def head_config(erm_id: str, spec: dict, dataset: str, profile: str, **hp) -> dict:
    """Config of one last-layer head: the ERM run it reads, the method spec and LLR hyperparameters."""
    llr = {**hparams.llr(dataset, profile), **hp}
    return {"erm": erm_id, "spec": dict(spec), "epochs": llr["epochs"], "lr": llr["lr"],
            "batch_size": llr["batch_size"]}


def _evaluate_heads(f: dict, W, b, n_groups: int) -> list[dict]:
    """Per head: test and held-out summaries, and per-group min/avg margins on the held-out set (its training set)."""
    from repro import metrics

    out = []
    for h in range(W.shape[0]):
        row = {}
        for split in ("heldout", "test"):
            x, y, g = f[f"features_{split}"], f[f"y_{split}"], f[f"g_{split}"]
            logits = x.double() @ W[h].double().T + b[h].double()
            row.update({f"{split}_{k}": v for k, v in metrics.summarize(logits.argmax(1), y, g, n_groups).items()})
        m = metrics.margins(f["features_heldout"], f["y_heldout"], W[h], b[h])
        gm = metrics.group_margins(m, f["g_heldout"].cpu().numpy(), n_groups)
        row["margin_min"] = [None if np.isnan(v) else float(v) for v in gm["min"]]
        row["margin_avg"] = [None if np.isnan(v) else float(v) for v in gm["avg"]]
        out.append(row)
    return out


def run_heads(configs: list[dict]) -> list[str]:
    """Compute the missing heads; heads reading the same ERM features are trained in one batched call, on the
    process's device (repro.device) with the run thread count."""
    from repro import device as devices

    with devices.run_threads():
        return _run_heads(configs, devices.resolve())


def _run_heads(configs: list[dict], device) -> list[str]:
    from repro import features, last_layer

    store = runs.Store()
    missing = list({runs.run_id("heads", c): c for c in configs
                    if not runs.is_done(runs.run_dir("heads", c, store))}.values())
    print(f"heads: {len({runs.run_id('heads', c) for c in configs})} runs, {len(missing)} to compute")
    by_source: dict = {}
    for c in missing:
        key = (c["erm"], c["epochs"], c["lr"], c["batch_size"])
        by_source.setdefault(key, {})[runs.run_id("heads", c)] = c
    for (erm_id, epochs, lr, batch_size), todo in by_source.items():
        f = features.load(runs.run_dir("erm", erm_id, store))
        meta = features.metadata(runs.run_dir("erm", erm_id, store))
        n_groups = _n_groups(meta["config"]["dataset"])
        x, y, g = f["features_heldout"], f["y_heldout"], f["g_heldout"]
        head = (f["head_weight"], f["head_bias"])
        specs = [{**c["spec"], **({"erm_head": head} if c["spec"]["method"] == "afr" else {})} for c in todo.values()]
        W, b = last_layer.fit(x, y.numpy(), g.numpy(), specs, n_classes=int(head[0].shape[0]), epochs=epochs,
                              lr=lr, batch_size=batch_size, device=device)
        on_device = {k: v.to(device) for k, v in f.items()}
        evaluated = _evaluate_heads(on_device, W.to(device), b.to(device), n_groups)
        for h, ((rid, config), result) in enumerate(zip(todo.items(), evaluated)):
            def compute(_config, workdir, h=h, result=result):
                runs.save_safetensors(Path(workdir) / "head.safetensors", {"weight": W[h].contiguous(),
                                                                           "bias": b[h].contiguous()})
                return result
            runs.get("heads", config, compute, store)
    return [runs.run_id("heads", c) for c in configs]


def _n_groups(dataset: str) -> int:
    from repro import data

    return len(data.group_names(dataset))


def heads_table(configs: list[dict]) -> pd.DataFrame:
    return _table("heads", configs)


# ------------------------------------------------------------------------------------ section grids

def sgd_steps(n: int, epochs: int, batch_size: int) -> int:
    """SGD steps of `epochs` passes over n examples in batches of batch_size (the last batch may be short)."""
    return epochs * math.ceil(n / batch_size)


def svm_config(erm_id: str, dataset: str, profile: str, factor: float, n_points: int, seed: int) -> dict:
    llr = hparams.llr(dataset, profile)
    return {"erm": erm_id, "lr": 1e-3, "batch_size": llr["batch_size"], "llr_epochs": llr["epochs"],
            "factor": factor, "n_points": n_points, "seed": seed}


def _svm_compute(config: dict, workdir) -> dict:
    """Figure 3: direction error between an unregularized logistic-loss LLR head and the SVM, over SGD steps."""
    from repro import device as devices
    from repro import features

    with devices.run_threads():
        return _svm_path(config, features.load(runs.run_dir("erm", config["erm"])))


def _svm_path(config: dict, f: dict) -> dict:
    from repro import last_layer, metrics

    x, y = f["features_heldout"], f["y_heldout"].numpy()
    standard = sgd_steps(len(y), config["llr_epochs"], config["batch_size"])
    last = int(config["factor"] * standard)
    steps = sorted({int(s) for s in np.geomspace(1, last, config["n_points"])})
    W, _ = last_layer.sgd_path(x, y, steps, seeds=(config["seed"],), lr=config["lr"],
                               batch_size=config["batch_size"], n_classes=1)
    theta_svm = metrics.svm_direction(x.numpy(), y, seed=config["seed"])
    errors = [metrics.direction_error(W[i, 0, 0].numpy(), theta_svm) for i in range(len(steps))]
    return {"steps": steps, "direction_error": errors, "standard_steps": standard}


def run_svm(configs: list[dict]) -> list[str]:
    store = runs.Store()
    missing = [c for c in configs if not runs.is_done(runs.run_dir("svm", c, store))]
    print(f"svm: {len(configs)} runs, {len(missing)} to compute")
    for c in missing:
        runs.get("svm", c, _svm_compute, store)
    return [runs.run_id("svm", c) for c in configs]


def svm_table(configs: list[dict]) -> pd.DataFrame:
    return _table("svm", configs)
