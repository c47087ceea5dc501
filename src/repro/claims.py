"""The paper's checkable claims: each is evaluated by its section notebook from that section's tables and
glued (myst-nb) as `<key>_value` and `<key>_verdict`; the scorecard page pastes them, so no number on it is
typed by hand.

A claim "on every dataset" is about the paper's four datasets, the registry's (repro.datasets.names()), not
about the datasets a profile's params grid happens to list; claims that name datasets (Figure 3, CelebA and
CivilComments) are about those.

Every criterion compares a statistic with a threshold fixed in this file, from the paper's words and, where
the paper prints them, its numbers (PAPER_TABLE1: the Table 1 criterion holds on the paper's own Table 1).
The statistic comes with a 90% Student-t interval over its independent units (repro.uncertainty). Verdicts:
"supported" (the whole interval on the claim's side), "not supported" (the whole interval on the other
side), "inconclusive" (the interval straddles the threshold, or there is none), or "not measurable in this
profile", always with its reason in the value (a dataset of the claim is missing from this build's results,
a curve is too short, a correlation has nothing to correlate, ...). A claim made of several tests (datasets,
groups, curves) covers the paper's scope for it, never only the part this build measured: a test that is not
measurable keeps the claim from being supported (repro.uncertainty.at_least).
"""
from __future__ import annotations

import html
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from repro import datasets as registry
from repro.uncertainty import (INCONCLUSIVE, LEVEL, NOT_MEASURABLE, NOT_SUPPORTED, SUPPORTED,  # noqa: F401
                               Estimate, at_least, estimate, every, judge, t_interval, undefined)
from repro.uncertainty import fmt as _fmt
from repro.uncertainty import mean as _mean
from repro.uncertainty import pearson as _pearson

# Thresholds, fixed from the paper's words before any number of a real book was looked at.
NC_COLLAPSE = 10.0  # held-out NC1 / train NC1: "an order of magnitude"
NC_COMPARABLE = 2.0  # "comparable": the ratio is below 2
NC_FLAT = 0.5  # train NC1 at the end / after epoch 1: "no significant decrease" keeps at least half
SVM_ERROR = 0.1  # directional error to the hard-margin SVM: "not converged" is above 0.1
R_RATIO = 0.99  # Fig. 4: r > 0.99
GAIN = 0.02  # LLR "improves over" ERM: WGA gain above +0.02; "vice versa" (LLR below ERM): gain below -0.02
CB_GAP = 0.05  # "nearly matches": best ERM and best LLR WGA within 0.05
AFR0_GAP = 0.03  # AFR at gamma 0 vs CB-LLR with upweighting: WGA within 0.03
COLLAPSE = 0.1  # "catastrophic collapse": smoothed test WGA falls by at least 0.1 from its maximum
SMOOTH = 3  # epochs in the centred moving average of a WGA curve (fewer at its two ends)
# A collapse needs a full SMOOTH-epoch window that shares no epoch with the final value's (SMOOTH // 2 + 1
# epochs): SMOOTH + 2 epochs. On shorter curves every smoothed value overlaps the final one, and with 2
# epochs the smoothed maximum minus the final value is 0 whatever the data.
MIN_EPOCHS = SMOOTH + 2

# Scopes: the paper's datasets (the registry), and those a claim names.
DATASETS = registry.names()
FIG3 = tuple(d for d in DATASETS if registry.get(d).n_classes == 2)  # Fig. 3: Waterbirds, CelebA, CivilComments
NO_COLLAPSE = ("celeba", "civilcomments")  # Sec. 2.1 and App. A name these two
MISSING = "not in this build's results"

# Table 1 of the paper (Appendix A), as printed: per dataset, Pearson r of each group's test accuracy with its
# minimum margin and with its average margin, over 3 seeds; groups numbered as in the paper's code and here
# (g = y * n_attributes + a).
PAPER_TABLE1 = {
    "waterbirds": {"r_min_margin": (0.349, 0.380, -0.026, 0.282), "r_avg_margin": (-0.418, 0.585, 0.662, -0.185)},
    "celeba": {"r_min_margin": (0.245, 0.326, 0.385, 0.370), "r_avg_margin": (0.469, 0.290, 0.475, 0.495)},
    "civilcomments": {"r_min_margin": (0.214, 0.237, 0.227, 0.113), "r_avg_margin": (0.209, 0.271, 0.298, 0.247)},
    "multinli": {"r_min_margin": (0.574, 0.266, 0.027, 0.726, 0.492, 0.591),
                 "r_avg_margin": (0.865, 0.926, 0.858, 0.910, 0.823, 0.897)},
}
# how many of the paper's groups meet the Table 1 criterion (r(avg) > r(min)), and its largest r(min)
PAPER_AGREE = sum(a > m for rs in PAPER_TABLE1.values() for m, a in zip(rs["r_min_margin"], rs["r_avg_margin"]))
PAPER_MAX_R_MIN = max(max(rs["r_min_margin"]) for rs in PAPER_TABLE1.values())


def table1_groups() -> list[tuple[str, int]]:
    """(dataset, group) of every group of the paper's datasets: Table 1's scope (18 groups)."""
    return [(d, g) for d in DATASETS for g in range(registry.get(d).n_classes * registry.get(d).n_attrs)]


# What the paper itself prints for a claim, in its text or tables (ResNet/BERT on the real data): the number as
# the paper words it, where, and the exact words of the paper that carry it (tests/test_claims.py finds each of
# them in the paper's text). Figure 4's caption: r "close to 1 for all datasets".
PAPER_R = "r > 0.99"
PAPER_NUMBERS = {
    "ratio_r_celeba": (PAPER_R, "Secs. 1 and 3.1", "with $r > 0.99$ on CelebA and CivilComments"),
    "ratio_r_civilcomments": (PAPER_R, "Secs. 1 and 3.1", "with $r > 0.99$ on CelebA and CivilComments"),
    "margin_avg_vs_min": (f"r(avg) > r(min) in {PAPER_AGREE} of {len(table1_groups())} groups", "Table 1",
                          "Correlation between types of training margins and group test accuracy"),
}
PAPER_FIGURE4 = {"celeba": "> 0.99", "civilcomments": "> 0.99", "waterbirds": "close to 1", "multinli": "close to 1"}


@dataclass(frozen=True)
class Claim:
    key: str
    section: str  # the notebook that evaluates and glues it
    statement: str  # the paper's claim, paraphrased
    test: str  # the criterion this build applies

    @property
    def shown(self) -> str:
        """The claim as its tables show it: the statement, then the paper's own number where it prints one."""
        if self.key not in PAPER_NUMBERS:
            return self.statement
        number, where, _ = PAPER_NUMBERS[self.key]
        return f"{self.statement}. *Paper ({where}, real data): {number}*"


_EVERY = " on each of the paper's four datasets"
CLAIMS = [
    Claim("nc_heldout_waterbirds", "neural_collapse", "Sec. 2.1: on Waterbirds, held-out NC1 is at least an order "
          "of magnitude above training NC1 at the end of training",
          f"mean over seeds of NC1(held-out) / NC1(train) >= {NC_COLLAPSE:g}"),
    Claim("nc_heldout_multinli", "neural_collapse", "Sec. 2.1: the same holds on MultiNLI",
          f"mean over seeds of NC1(held-out) / NC1(train) >= {NC_COLLAPSE:g}"),
    Claim("nc_none_celeba", "neural_collapse", "Sec. 2.1: CelebA features do not collapse; training and held-out "
          "NC1 stay comparable", f"mean over seeds of NC1(held-out) / NC1(train) < {NC_COMPARABLE:g} (comparable)"),
    Claim("nc_none_civilcomments", "neural_collapse", "Sec. 2.1: the same holds on CivilComments",
          f"mean over seeds of NC1(held-out) / NC1(train) < {NC_COMPARABLE:g} (comparable)"),
    Claim("nc_flat", "neural_collapse", "Sec. 2.1: training NC1 on CelebA and CivilComments shows no significant "
          "decrease after the first epoch",
          f"mean over seeds of NC1(train, end) / NC1(train, epoch 1) >= {NC_FLAT:g} on both"),
    Claim("svm_slow", "margins", "Sec. 2.2 / Fig. 3: after 10x the standard number of steps, LLR has not converged "
          "to the SVM direction", f"on each of Figure 3's datasets ({', '.join(map(registry.display, FIG3))}), "
          "mean over the seeds whose "
          f"held-out features are linearly separable of the final directional error to the hard-margin SVM > "
          f"{SVM_ERROR:g} (a dataset with no such seed is not measurable: its hard-margin SVM does not exist)"),
    Claim("margin_avg_vs_min", "margins", "Table 1 / App. A: the average training margin of a group is more "
          "correlated with its test accuracy than its minimum margin, in general",
          "per group, r(average margin) - r(minimum margin) > 0, r over the group's (ERM seed, LLR seed) heads; "
          f"supported when more than half of the paper's {len(table1_groups())} groups agree (the paper's own "
          f"Table 1: {PAPER_AGREE} of {len(table1_groups())})"),
    Claim("ratio_r_celeba", "group_ratio", "Fig. 4: ERM and LLR test WGA correlate with r > 0.99 on CelebA",
          f"Pearson r > {R_RATIO:g} between seed-mean WGA of LLR at held-out ratio r (every ERM ratio) and of ERM "
          "trained at ratio r"),
    Claim("ratio_r_civilcomments", "group_ratio", "Fig. 4: the same on CivilComments",
          f"Pearson r > {R_RATIO:g}, as for CelebA"),
    Claim("ratio_gain_needs_balance", "group_ratio", "Sec. 3.1: LLR improves over ERM when the held-out set has a "
          "higher group ratio than ERM's training set, and vice versa",
          f"per dataset, mean over (ERM ratio, held-out ratio) cells of LLR's WGA - WGA of ERM trained at its ERM "
          f"ratio: > +{GAIN:g} over cells where the held-out ratio is higher and < -{GAIN:g} where it is lower"
          + _EVERY),
    Claim("cb_erm_matches_llr", "class_balance", "Sec. 3.2 / Fig. 5: optimally class-balanced ERM nearly matches "
          "optimally class-balanced LLR on every dataset", "abs(best of 4 ERM balancings - best of 4 LLR runs "
          f"balanced as their ERM (none, subsetting, upsampling, upweighting)) <= {CB_GAP:g}" + _EVERY),
    Claim("afr_gamma0", "class_balance", "Sec. 3.2: AFR with γ = 0 reduces to CB-LLR with upweighting",
          f"abs(WGA of AFR (γ = 0) - WGA of CB-LLR (upweighting)) <= {AFR0_GAP:g}" + _EVERY),
    Claim("afr_group_balance", "class_balance", "Sec. 3.2: AFR's weights give the held-out set a better group "
          "balance", "mean over seeds of (minority groups' weight share at the largest γ - their share at "
          "γ = 0, same seed) > 0" + _EVERY),
    Claim("gb_collapse", "appendix_a", "App. A / Fig. 6: group-balanced upsampling and upweighting collapse test "
          "WGA during training on CelebA and CivilComments", f"for all four curves: maximum - final value of the "
          f"seed-mean WGA curve smoothed by a centred {SMOOTH}-epoch moving average (shorter at the ends) >= "
          f"{COLLAPSE:g}; a curve of fewer than {MIN_EPOCHS} epochs is not measurable"),
    Claim("dfr_beats_cb_erm", "appendix_a", "App. A / Fig. 7: optimally group-balanced DFR beats optimally "
          "class-balanced ERM on every dataset", "best of 3 DFR balancings - best of 3 ERM class balancings > 0"
          + _EVERY),
]

# The companions (repro.datasets.COMPANIONS): real images and texts beside the paper's datasets. The paper's
# general claims are tested on each with the criteria above; the dataset-specific ones of Sec. 2.1 become the
# question which of its two patterns a companion follows. They are kept apart from CLAIMS: the scorecard counts
# and lists them separately, and no claim "on each of the paper's four datasets" includes them.
COMPANIONS = registry.companions()


def _companion_claims(name: str) -> list[Claim]:
    """The claims tested on one companion dataset (section "companions")."""
    shown = registry.display(name)

    def general(key, fig):
        paper = {c.key: c for c in CLAIMS}[key]
        return Claim(f"{key}_{name}", "companions", f"{fig} on {shown}: " + paper.statement.split(": ", 1)[1],
                     paper.test.replace(_EVERY, ""))
    return [
        Claim(f"nc_collapse_{name}", "companions", f"Sec. 2.1 on {shown}: the collapse pattern of Waterbirds and "
              "MultiNLI, held-out NC1 at least an order of magnitude above training NC1 at the end of training",
              f"mean over seeds of NC1(held-out) / NC1(train) >= {NC_COLLAPSE:g}"),
        Claim(f"nc_comparable_{name}", "companions", f"Sec. 2.1 on {shown}: the pattern of CelebA and "
              "CivilComments, held-out and training NC1 comparable at the end of training",
              f"mean over seeds of NC1(held-out) / NC1(train) < {NC_COMPARABLE:g}"),
        Claim(f"ratio_r_{name}", "companions", f"Fig. 4 on {shown}: ERM and LLR test WGA correlate with r > 0.99",
              f"Pearson r > {R_RATIO:g}, as for CelebA"),
        general("ratio_gain_needs_balance", "Sec. 3.1"), general("cb_erm_matches_llr", "Sec. 3.2 / Fig. 5"),
        general("afr_gamma0", "Sec. 3.2"), general("afr_group_balance", "Sec. 3.2"),
        general("dfr_beats_cb_erm", "App. A / Fig. 7"),
    ]


COMPANION_CLAIMS = [c for name in COMPANIONS for c in _companion_claims(name)]
BY_KEY = {c.key: c for c in CLAIMS + COMPANION_CLAIMS}


def _seed_table(frame: pd.DataFrame, columns, value: str = "test_acc_wg", seed: str = "seed") -> pd.DataFrame:
    """seeds x columns table of `value` (NaN where a seed lacks a cell)."""
    return frame.pivot_table(index=seed, columns=columns, values=value, aggfunc="mean", dropna=False)


def _rows(frame: pd.DataFrame, dataset: str) -> pd.DataFrame:
    return frame[frame["dataset"] == dataset] if len(frame) else frame


def _text(prefix: str, est: Estimate) -> str:
    """'prefix value [lo, hi]', or the reason alone when the statistic is not measurable."""
    return prefix + est.text() if np.isfinite(est.point) else est.text()


def _named(item: str) -> str:
    """A test's item as the page shows it: its dataset as the paper writes it ("CelebA upsampling")."""
    dataset, _, rest = item.partition(" ")
    return f"{registry.display(dataset)} {rest}".strip()


def _per_dataset(results: list, scope) -> tuple[str, str]:
    """(value, verdict) of a claim on every item of `scope` (datasets, or curves) from [(item, text, verdict)]
    of those measured: an item without a result is not measurable, so the claim is never supported on a
    subset of its scope."""
    found = {d: (t, v) for d, t, v in results}
    if not found:
        return f"not measurable: {', '.join(map(_named, scope))} {MISSING}", NOT_MEASURABLE
    rows = [(d, *found.get(d, (f"not measurable: {MISSING}", NOT_MEASURABLE))) for d in scope]
    return "; ".join(f"{_named(d)} {t}" for d, t, _ in rows), every(v for _, _, v in rows)


# ------------------------------------------------------------------ the sections' claims

def _nc(end: pd.DataFrame, dataset: str, num: str, den: str) -> Estimate:
    part = _rows(end, dataset)
    if not len(part):
        return undefined(f"{registry.display(dataset)} {MISSING}")
    return t_interval((part[num] / part[den]).to_numpy(dtype=float))


def neural_collapse(end: pd.DataFrame) -> dict:
    out = {}
    for key, dataset, op, t in (("nc_heldout_waterbirds", "waterbirds", ">=", NC_COLLAPSE),
                                ("nc_heldout_multinli", "multinli", ">=", NC_COLLAPSE),
                                ("nc_none_celeba", "celeba", "<", NC_COMPARABLE),
                                ("nc_none_civilcomments", "civilcomments", "<", NC_COMPARABLE)):
        est = _nc(end, dataset, "nc1_heldout_end", "nc1_train_end")
        out[key] = (_text("ratio ", est), judge(est, op, t))
    flat = [(d, _nc(end, d, "nc1_train_end", "nc1_train_first")) for d in NO_COLLAPSE if len(_rows(end, d))]
    out["nc_flat"] = _per_dataset([(d, e.text(), judge(e, ">=", NC_FLAT)) for d, e in flat], NO_COLLAPSE)
    return out


def svm_slow(paths: pd.DataFrame) -> tuple[str, str]:
    """Final directional error per dataset of Figure 3, over the seeds whose held-out features are linearly
    separable (a `separable` column; a store without it counts as separable)."""
    if not len(paths):
        return _per_dataset([], FIG3)
    paths = paths if "separable" in paths else paths.assign(separable=True)
    last = paths.sort_values("step").groupby(["dataset", "seed"], sort=False).tail(1)
    results = []
    for dataset, part in last.groupby("dataset", sort=False):
        ok = part["separable"].astype(bool).to_numpy()
        if not ok.any():
            results.append((dataset, "not measurable: held-out features not linearly separable", NOT_MEASURABLE))
            continue
        est = t_interval(part["direction_error"].to_numpy()[ok])
        note = "" if ok.all() else f" ({ok.sum()} of {len(ok)} seeds separable)"
        results.append((dataset, est.text() + note, judge(est, ">", SVM_ERROR)))
    return _per_dataset(results, FIG3)


def _why_r(part: pd.DataFrame) -> str:
    """Why a group's r(average margin) - r(minimum margin) over its heads is undefined."""
    acc = part["test_acc"].astype(float)
    for col, label in (("test_acc", "test accuracy"), ("margin_avg", "average margin"),
                       ("margin_min", "minimum margin")):
        values = part[col].astype(float)[acc.notna()].dropna()
        if len(values) < 2:
            return f"{label} defined for {len(values)} head(s)"
        if values.nunique() == 1:
            return f"{label} the same ({values.iloc[0]:.3g}) for every head"
    return "r undefined"


def margin_gap(part: pd.DataFrame) -> Estimate:
    """One group's r(average margin, test acc) - r(minimum margin, test acc) over its (ERM seed, LLR seed) heads.
    The units are ERM seeds, each with all its heads (heads of one ERM seed share its features, so they are
    not independent): the jackknife leaves out one ERM seed at a time. A head without a minimum margin (no
    held-out point of the group classified correctly) drops out of that correlation."""
    heads = [g[["margin_min", "margin_avg", "test_acc"]].to_numpy(dtype=float) for _, g in part.groupby("erm_seed")]
    units = np.full((len(heads), max(len(h) for h in heads), 3), np.nan)  # (ERM seed, LLR head, column)
    for i, h in enumerate(heads):
        units[i, :len(h)] = h

    def gap(stack):
        flat = stack.reshape(len(stack), -1, 3)
        return _pearson(flat[..., 1], flat[..., 2]) - _pearson(flat[..., 0], flat[..., 2])
    return estimate(units, gap, why=_why_r(part))


def margin_groups(estimates: dict) -> tuple[str, str]:
    """Table 1's claim from {(dataset, group): Estimate of r(average margin) - r(minimum margin)}: a group
    agrees when the difference is above 0; supported when more than half of the paper's groups
    (table1_groups) agree. A group without an estimate, or with an undefined one, is unknown."""
    scope = table1_groups()
    ests = [estimates.get(k, undefined(MISSING)) for k in scope]
    verdicts = [judge(e, ">", 0.0) for e in ests]
    need, yes, no = len(scope) // 2 + 1, verdicts.count(SUPPORTED), verdicts.count(NOT_SUPPORTED)
    value = (f"r(avg) > r(min) in {yes} of {len(scope)} groups (need {need}), r(avg) < r(min) in {no}, "
             f"undecided in {verdicts.count(INCONCLUSIVE)}")
    why = Counter(e.why for e, v in zip(ests, verdicts) if v == NOT_MEASURABLE)
    if why:
        value += "; not measurable: " + ", ".join(f"{n} group(s) {w}" for w, n in why.items())
    return value, at_least(need, verdicts)


def margin_avg_vs_min(points: pd.DataFrame) -> tuple[str, str]:
    """Table 1's claim on this build's heads (repro.sections.margins' points)."""
    groups = points.groupby(["dataset", "group"], sort=False) if len(points) else []
    return margin_groups({(d, int(g)): margin_gap(part) for (d, g), part in groups})


def paper_table1_estimates() -> dict:
    """The paper's Table 1 as exact estimates of r(average margin) - r(minimum margin) per group (the paper
    prints no interval): what margin_groups gives on them is the criterion applied to the paper's numbers."""
    return {(d, g): Estimate(a - m, a - m, a - m, 3) for d, rs in PAPER_TABLE1.items()
            for g, (m, a) in enumerate(zip(rs["r_min_margin"], rs["r_avg_margin"]))}


def margins(paths: pd.DataFrame, points: pd.DataFrame) -> dict:
    return {"svm_slow": svm_slow(paths), "margin_avg_vs_min": margin_avg_vs_min(points)}


def _corr(s, n, at_llr):
    """r between LLR's seed-mean WGA per cell (columns n:) and ERM's at each cell's held-out ratio."""
    m = _mean(s)
    return _pearson(m[:, at_llr], m[:, n:])


def _gain(s, mask, n, at_erm):
    """Mean over the masked cells of LLR's seed-mean WGA - ERM's at the cell's ERM ratio."""
    m = _mean(s)
    return (m[:, n:] - m[:, at_erm])[:, mask].mean(axis=1)


def group_ratio(erm_rows: pd.DataFrame, llr_rows: pd.DataFrame) -> dict:
    """Figure 4's claims per dataset, over seeds (a seed's ERM at every ratio and its LLR heads are one unit)."""
    gains, r_est = _group_ratio_tests(erm_rows, llr_rows, DATASETS)
    out = {}
    for key, dataset in (("ratio_r_celeba", "celeba"), ("ratio_r_civilcomments", "civilcomments")):
        est = r_est.get(dataset, undefined(f"{registry.display(dataset)} {MISSING}"))
        out[key] = (_text("r = ", est), judge(est, ">", R_RATIO))
    out["ratio_gain_needs_balance"] = _per_dataset(gains, DATASETS)
    return out


def _group_ratio_tests(erm_rows: pd.DataFrame, llr_rows: pd.DataFrame, scope) -> tuple[list, dict]:
    """([(dataset, text, verdict)] of the gain test, {dataset: Estimate of Figure 4's r}) over `scope`."""
    gains, r_est = [], {}
    for dataset in scope:
        erm_part, llr_part = _rows(erm_rows, dataset), _rows(llr_rows, dataset)
        if not (len(erm_part) and len(llr_part)):
            continue
        erm = _seed_table(erm_part, "ratio")
        llr = _seed_table(llr_part, ["erm_ratio", "llr_ratio"]).dropna(axis=1, how="all")  # the cells that were run
        seeds = erm.index.intersection(llr.index)
        units = np.hstack([erm.loc[seeds].to_numpy(), llr.loc[seeds].to_numpy()])
        ratios, cells, n = list(erm.columns), list(llr.columns), erm.shape[1]
        at_llr = [ratios.index(rl) if rl in ratios else -1 for _, rl in cells]  # ERM trained at the held-out ratio
        at_erm = [ratios.index(re) if re in ratios else -1 for re, _ in cells]  # ERM at the LLR's ERM ratio
        if min(at_llr + at_erm, default=-1) < 0:
            why = "ERM not trained at every ratio of the LLR cells"
            r_est[dataset] = undefined(why)
            gains.append((dataset, f"not measurable: {why}", NOT_MEASURABLE))
            continue
        r_est[dataset] = estimate(units, lambda s, n=n, a=at_llr: _corr(s, n, a), fisher=True,
                                  why="a constant WGA: r has nothing to correlate")
        up, down = [re < rl for re, rl in cells], [re > rl for re, rl in cells]
        if not (any(up) and any(down)):
            gains.append((dataset, "not measurable: no cell with a higher and one with a lower held-out ratio",
                           NOT_MEASURABLE))
            continue
        e_up, e_down = (estimate(units, lambda s, m=m, n=n, a=at_erm: _gain(s, m, n, a)) for m in (up, down))
        gains.append((dataset, f"{e_up.text()} where higher, {e_down.text()} where lower",
                      every([judge(e_up, ">", GAIN), judge(e_down, "<", -GAIN)])))
    return gains, r_est


def _best_gap(erm: pd.DataFrame, other: pd.DataFrame, stat) -> Estimate:
    """Estimate of stat(best seed-mean WGA of ERM configs, best of the other side's), seeds as units (the
    jackknife re-selects the best configs without each seed)."""
    seeds = erm.index.intersection(other.index)
    n = erm.shape[1]
    units = np.hstack([erm.loc[seeds].to_numpy(), other.loc[seeds].to_numpy()])

    def best(s):
        m = _mean(s)
        return stat(np.nanmax(m[:, :n], axis=1), np.nanmax(m[:, n:], axis=1))
    return estimate(units, best, why="no seed has runs on both sides")


def _gaps(left: pd.DataFrame, left_col: str, right: pd.DataFrame, right_col: str, stat, op, threshold,
          scope=DATASETS) -> list:
    """[(dataset, text, verdict)] of a best-of gap for every dataset of `scope` both sides have rows for."""
    results = []
    for dataset in scope:
        a, b = _rows(left, dataset), _rows(right, dataset)
        if len(a) and len(b):
            est = _best_gap(_seed_table(a, left_col), _seed_table(b, right_col), stat)
            results.append((dataset, est.text(), judge(est, op, threshold)))
    return results


def class_balance(erm_rows, llr_rows, afr_rows, mass, minority: dict, scope=DATASETS) -> dict:
    cb = llr_rows[(llr_rows["erm_balance"] == "none") & (llr_rows["llr_balance"] == "upweighting")]
    same = llr_rows[llr_rows["erm_balance"] == llr_rows["llr_balance"]]  # CB-LLR as LaBonte et al. (2023) run it
    afr = afr_rows[afr_rows["gamma"] == 0] if len(afr_rows) else afr_rows
    gap = lambda a, b: np.abs(a - b)  # noqa: E731
    return {"cb_erm_matches_llr": _per_dataset(_gaps(erm_rows, "balance", same, "erm_balance", gap, "<=", CB_GAP,
                                                     scope), scope),
            "afr_gamma0": _per_dataset(_gaps(afr, "gamma", cb, "llr_balance", gap, "<=", AFR0_GAP, scope), scope),
            "afr_group_balance": afr_group_balance(mass, minority, scope)}


def afr_group_balance(mass: pd.DataFrame, minority: dict, scope=DATASETS) -> tuple[str, str]:
    """Per seed, the minority groups' share of AFR's weight at the largest gamma minus at gamma 0."""
    gammas = mass["gamma"].dropna() if len(mass) else pd.Series(dtype=float)
    top = gammas.max() if len(gammas) else np.nan
    results = []
    for dataset, part in (mass.groupby("dataset", sort=False) if len(mass) else []):
        minor = part[part["group"].isin(minority[dataset])]
        share = minor.groupby(["seed", "gamma"])["weight_share"].sum().unstack()
        if not (top > 0 and 0 in share and top in share):
            results.append((dataset, "not measurable: AFR not run at γ = 0 and at a γ above 0", NOT_MEASURABLE))
            continue
        est = t_interval((share[top] - share[0]).to_numpy())
        results.append((dataset, f"{_fmt(share[0].mean())} -> {_fmt(share[top].mean())}, rise {est.text()}",
                        judge(est, ">", 0.0)))
    value, verdict = _per_dataset([r for r in results if r[0] in scope], scope)
    return (f"γ = 0 -> {_fmt(top)}: {value}" if top > 0 else value), verdict


def smooth(curve: np.ndarray, width: int = SMOOTH) -> np.ndarray:
    """Centred moving average along the last axis (epochs); the window shrinks at both ends."""
    e = curve.shape[-1]
    idx = np.arange(e)
    window = np.abs(idx[:, None] - idx[None, :]) <= width // 2  # (epoch, epoch averaged)
    return curve @ (window / window.sum(axis=1, keepdims=True)).T


def _collapse(stack):
    s = smooth(np.nanmean(stack, axis=1))  # seed-mean curve per unit set: (k, epochs)
    return s.max(axis=1) - s[:, -1]


def appendix_a(curves: pd.DataFrame, bars: pd.DataFrame) -> dict:
    drops, names = [], [f"{d} {m}" for d in NO_COLLAPSE for m in ("upsampling", "upweighting")]
    for name in names:
        dataset, method = name.split()
        part = curves[(curves["dataset"] == dataset) & (curves["balance"] == method)] if len(curves) else curves
        if not len(part):
            continue
        table = _seed_table(part, "epoch").sort_index(axis=1)
        if table.shape[1] < MIN_EPOCHS:
            drops.append((name, f"not measurable: {table.shape[1]}-epoch curve, a collapse needs {MIN_EPOCHS} "
                          f"epochs with a {SMOOTH}-epoch window", NOT_MEASURABLE))
            continue
        est = estimate(table.to_numpy(), _collapse)
        drops.append((name, est.text(), judge(est, ">=", COLLAPSE)))
    dfr, erm = (bars[bars["method"] == m] if len(bars) else bars for m in ("group-balanced DFR", "class-balanced ERM"))
    return {"gb_collapse": _per_dataset(drops, names),
            "dfr_beats_cb_erm": _per_dataset(_gaps(erm, "balance", dfr, "balance", lambda a, b: b - a, ">", 0.0),
                                             DATASETS)}


def companions(end, ratio_erm, ratio_llr, cb_erm, cb_llr, cb_afr, mass, minority: dict, bars, scope) -> dict:
    """The companion claims of the datasets `scope`, from the tables of the four sections the companions page
    runs (neural collapse, group ratio, class balance, Appendix A), by the paper claims' criteria."""
    out = {}
    gains, r_est = _group_ratio_tests(ratio_erm, ratio_llr, scope)
    dfr, erm = (bars[bars["method"] == m] if len(bars) else bars for m in ("group-balanced DFR", "class-balanced ERM"))
    dfr_gaps = _gaps(erm, "balance", dfr, "balance", lambda a, b: b - a, ">", 0.0, scope)
    for name in scope:
        est = _nc(end, name, "nc1_heldout_end", "nc1_train_end")
        out[f"nc_collapse_{name}"] = (_text("ratio ", est), judge(est, ">=", NC_COLLAPSE))
        out[f"nc_comparable_{name}"] = (_text("ratio ", est), judge(est, "<", NC_COMPARABLE))
        r = r_est.get(name, undefined(f"{registry.display(name)} {MISSING}"))
        out[f"ratio_r_{name}"] = (_text("r = ", r), judge(r, ">", R_RATIO))
        out[f"ratio_gain_needs_balance_{name}"] = _per_dataset([g for g in gains if g[0] == name], (name,))
        one = class_balance(cb_erm, cb_llr, cb_afr, mass, minority, scope=(name,))
        for key in ("cb_erm_matches_llr", "afr_gamma0", "afr_group_balance"):
            out[f"{key}_{name}"] = one[key]
        out[f"dfr_beats_cb_erm_{name}"] = _per_dataset([g for g in dfr_gaps if g[0] == name], (name,))
    return out


# Badge of each verdict (sphinx-design roles); a verdict not listed here gets the neutral "info" colour.
# A finding against the paper is not a failed build: "not supported" is amber, never red; "inconclusive" blue.
BADGES = {SUPPORTED: "success", NOT_SUPPORTED: "warning", "inconclusive": "info", NOT_MEASURABLE: "light"}


def badge(verdict: str) -> str:
    """The verdict as a coloured MyST badge."""
    return f"{{bdg-{BADGES.get(verdict, 'info')}}}`{verdict}`"


def table(results: dict) -> pd.DataFrame:
    """The section's claims as a table: paper's claim, criterion, this build's value, verdict (as a badge)."""
    return pd.DataFrame([{"claim (paper)": BY_KEY[k].shown, "criterion": BY_KEY[k].test, "this build": v,
                          "verdict": badge(verdict)} for k, (v, verdict) in results.items()])


def badge_html(verdict: str) -> str:
    """The same badge as HTML (sphinx-design's classes): a glued value pasted into another page keeps HTML,
    not Markdown (myst-nb's `{glue:md}` only pastes within a page)."""
    colour = BADGES.get(verdict, "info")
    return f'<span class="sd-sphinx-override sd-badge sd-bg-{colour} sd-bg-text-{colour}">{html.escape(verdict)}</span>'


class Pasted:
    """A glued value: plain text (no quotes), and optionally HTML, which the `{glue}` role prefers."""

    def __init__(self, text: str, html: str | None = None):
        self.text, self.html = text, html

    def __repr__(self) -> str:
        return self.text

    def _repr_html_(self) -> str | None:
        return self.html


def glue(results: dict) -> None:
    """Glue `<key>_value` (text) and `<key>_verdict` (text, and a badge in HTML) for the scorecard page,
    without displaying them."""
    from myst_nb import glue as nb_glue

    for key, (value, verdict) in results.items():
        if key not in BY_KEY:
            raise ValueError(f"unknown claim {key!r}; claims are listed in repro.claims.CLAIMS")
        if "|" in value:
            raise ValueError(f"claim {key}: a glued value may not contain '|' (it is pasted into a table)")
        nb_glue(f"{key}_value", Pasted(value), display=False)
        nb_glue(f"{key}_verdict", Pasted(verdict, badge_html(verdict)), display=False)


def show(results: dict) -> None:
    """Glue the section's claims for the scorecard and display them as the page's claims table."""
    from IPython.display import Markdown, display

    glue(results)
    display(Markdown(table(results).to_markdown(index=False)))


# ------------------------------------------------------------------ verdict counts (front page, scorecard)

def glued_verdicts(folder: Path, claims: list | None = None) -> dict:
    """claim key -> verdict of `claims` (default: the paper's, CLAIMS), read from the glued outputs of the
    executed notebooks in `folder`."""
    import json

    found = {}
    for claim in CLAIMS if claims is None else claims:
        path = Path(folder) / f"{claim.section}.ipynb"
        if not path.is_file():
            continue
        for cell in json.loads(path.read_text()).get("cells", []):
            for output in cell.get("outputs", []):
                name = output.get("metadata", {}).get("scrapbook", {}).get("name")
                if name == f"{claim.key}_verdict":
                    text = next(v for k, v in output["data"].items() if k.endswith("text/plain"))
                    found[claim.key] = "".join(text) if isinstance(text, list) else text
    return found


def counts_markdown(verdicts: dict, claims: list | None = None) -> str:
    """'N claims: [k supported] [m not supported] ...' as badges, in the order of BADGES; claims of `claims`
    (default: the paper's, CLAIMS) without a glued verdict are counted as not evaluated."""
    claims = CLAIMS if claims is None else claims
    counts = {v: 0 for v in BADGES}
    for v in verdicts.values():
        counts[v] = counts.get(v, 0) + 1
    parts = [f"{{bdg-{BADGES.get(v, 'info')}}}`{n} {v}`" for v, n in counts.items() if n]
    missing = len(claims) - len(verdicts)
    if missing:
        parts.append(f"{{bdg-muted}}`{missing} not evaluated in this build`")
    return f"{len(claims)} claims: " + " ".join(parts)


def stage_counts(stage: Path) -> str:
    """Count the verdicts glued by the executed notebooks under `stage`/book and store the line as the MyST
    substitution `verdict_counts` of the staged `_config.yml` (the front page and the scorecard show it)."""
    import yaml

    from repro import files

    line = counts_markdown(glued_verdicts(Path(stage) / "book"))
    companions = counts_markdown(glued_verdicts(Path(stage) / "book", COMPANION_CLAIMS), COMPANION_CLAIMS)
    path = Path(stage) / "_config.yml"
    config = files.read_yaml(path)
    substitutions = config.setdefault("parse", {}).setdefault("myst_substitutions", {})
    substitutions["verdict_counts"], substitutions["companion_counts"] = line, companions
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return line


SCORECARD_HEAD = f"""# Reproduction scorecard

**This build:** {{{{ verdict_counts }}}}

```{{admonition}} Read the verdicts with the profile in mind
:class: warning
This build used the **{{{{ profile }}}}** profile. On `cpu` and `smoke` the data are synthetic twins and the
models small (the deviations page says which): a verdict there says whether the paper's mechanism shows up
on the twins, not whether the paper's numbers replicate. Verdicts fall as they fall; none is tuned.
```

**What a verdict means.** Each value this build measured is followed by its {LEVEL:.0%} interval,
`value [low, high]`, and compared with the claim's criterion:
- {badge(SUPPORTED)}: the whole interval meets the criterion;
- {badge(NOT_SUPPORTED)}: none of the interval meets it, so this build measured the opposite of the claim;
- {badge(INCONCLUSIVE)}: the interval straddles the threshold, or there is none (a single seed);
- {badge(NOT_MEASURABLE)}: this build cannot test the claim, and its value says why.

Every claim of the paper that a number can check has a row below, grouped by the page that checks it. The
"this build" and "verdict" cells are pasted (myst-nb `glue`) from the section notebooks, which compute them
from runs in the run store; nothing in those two columns is typed. How the verdicts are reached, the
intervals and the criteria are described {{ref}}`after the tables <scorecard-details>`.
"""

SCORECARD_DETAILS = f"""
(scorecard-details)=
## How the verdicts are reached

**Claims of several tests.** A claim made of several tests (per dataset, per curve, per group) covers the
paper's scope for it, never only the part this build measured: it is supported when all of its tests are
(Table 1: more than half of the paper's {len(table1_groups())} groups), not supported when a measured test
fails (Table 1: too few groups can still agree), and otherwise inconclusive, or not measurable when none of
its tests is measurable. A count of groups is a count, with no interval: the groups whose own interval is on
neither side are counted as undecided. A test is not measurable when a dataset of the claim is missing from
the build's results, a training curve is too short to show a collapse, a correlation has nothing to
correlate (a value that is the same for every run), or the hard-margin SVM does not exist.

**Intervals.** Every interval is a Student-t interval,
$\\hat\\theta \\pm t_{{0.95,\\,n-1}} \\cdot \\mathrm{{se}}$, over the statistic's $n$ independent units:
seeds, where a seed's runs at every configuration go together. Values are printed to 3 significant digits,
or more where 3 would print the estimate at an end of its interval; an interval of zero width (every seed gives the same value) is written "no spread".
- Means over seeds (NC1 ratios, SVM direction errors, AFR's weight shift, the group-ratio gains): the
  standard error is $s / \\sqrt{{n}}$, the textbook interval, with exactly {LEVEL:.0%} coverage when the
  seeds' values are normal (with 3 seeds: mean $\\pm 1.69\\, s$).
- Other statistics (the best-of gaps of Figures 5 and 7 and AFR at $\\gamma = 0$, the collapse of Figure 6,
  the correlation of Figure 4, the Table 1 differences): the jackknife standard error (the statistic
  recomputed without each unit). For a mean it is exactly $s / \\sqrt{{n}}$, so where a statistic reduces to a
  mean (a best-of gap whose best configurations stay the same) the interval is the t interval itself;
  otherwise its {LEVEL:.0%} coverage is approximate: close to it for the best-of gaps and the collapse in
  simulations with 3 seeds; lower for Figure 4's r near 1, which seed noise biases down, so that the errors
  fall on *inconclusive* rather than on a verdict. Figure 4's r is taken on Fisher's z scale and mapped
  back, so its interval stays within $[-1, 1]$ and an r of exactly 1 is the upper end of its own interval.
  For Table 1 the unit is an ERM seed with all its LLR heads, since heads that share an ERM seed share its
  features.

**Criteria.** The thresholds are fixed in `repro.claims` from the paper's words, the same for every
profile, and none was chosen for the verdict it gives. "Comparable" NC1 is a ratio below {NC_COMPARABLE:g};
"improves" and "vice versa" are WGA gains above +{GAIN:g} and below -{GAIN:g}, per dataset; "optimally
class-balanced" takes the best of the same 4 balancings (none, subsetting, upsampling, upweighting) on both
sides, LLR balanced as its ERM, as in LaBonte et al. (2023); AFR's group balance is the rise of the minority
groups' weight share from $\\gamma = 0$ (class balancing alone) to the largest $\\gamma$, paired by seed.
Table 1 tests what the paper's numbers show, "average training margin is more correlated in general with
group test accuracy than minimum training margin": r(average) > r(minimum) in more than half of the groups.
The paper's own Table 1 meets it in {PAPER_AGREE} of its {len(table1_groups())} groups; it would not meet a
fixed "uncorrelated" bound on the minimum margin (its r reach {PAPER_MAX_R_MIN:g}). "Catastrophic collapse"
is measured on the seed-mean WGA curve smoothed by a centred {SMOOTH}-epoch moving average, because the
maximum of a noisy curve is biased upward by its noise; a curve needs {MIN_EPOCHS} epochs, so that a full
window before the end shares no epoch with the final value.
"""


def scorecard_markdown() -> str:
    """The text of book/scorecard.md: what the verdicts mean and the profile's caveat, then per section page
    one row per claim, its measured cells pasted from the section notebook, then how verdicts are reached."""
    out = [SCORECARD_HEAD]
    for section in dict.fromkeys(c.section for c in CLAIMS):
        out.append(f"\n## []({section}.ipynb)\n")
        out.append(_claims_table([c for c in CLAIMS if c.section == section]))
    if COMPANION_CLAIMS:
        out.append(COMPANIONS_HEAD)
        out.append(_claims_table(COMPANION_CLAIMS))
    return "\n".join(out) + "\n" + SCORECARD_DETAILS


COMPANIONS_HEAD = """
## Beside the paper: real companions

**Real companions:** {{ companion_counts }}

Not the paper's datasets and not counted above: the paper's general claims tested, by the same criteria, on
two datasets built from real images and real texts ([the companions' page](companions.ipynb)). A verdict here
says whether the mechanism shows on real data of this kind, not whether the paper's numbers replicate.
"""


def _claims_table(claims: list) -> str:
    """A Markdown table of `claims` with their glued values and verdicts."""
    rows = [f"| {c.shown} | {c.test} | {{glue:text}}`{c.section}.ipynb::{c.key}_value:s` | "
            f"{{glue}}`{c.section}.ipynb::{c.key}_verdict` |" for c in claims]
    return "\n".join(["| claim (paper) | criterion | this build | verdict |", "|---|---|---|---|", *rows])
