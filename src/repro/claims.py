"""The paper's checkable claims: each is evaluated by its section notebook from that section's tables and
glued (myst-nb) as `<key>_value` and `<key>_verdict`; the scorecard page pastes them, so no number on it is
typed by hand.

Every criterion compares a statistic with a threshold fixed in this file. The statistic comes with a 90%
bootstrap interval over its independent units (seeds, or (ERM seed, LLR seed) pairs where each pair is one
head): all n**n ordered resamples when there are few (27 for 3 seeds, exact), else DRAWS seeded draws, so the
interval is the same bits on every build. Verdicts: "supported" (the whole interval on the claim's side),
"not supported" (the whole interval on the other side), "inconclusive" (the interval straddles the
threshold, or one unit gives no interval), or "not measurable in this profile" (a dataset of the claim is
not in the profile's grid, or the statistic is undefined). A claim made of several tests (datasets, groups,
curves) combines their verdicts three-valuedly: it is supported when enough tests are, not supported when
too few can still be.
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from repro.uncertainty import (DRAWS, EXACT_MAX, INCONCLUSIVE, LEVEL, NOT_MEASURABLE, NOT_SUPPORTED, SUPPORTED,  # noqa: F401
                               Estimate, at_least, estimate, every, judge, resamples)
from repro.uncertainty import fmt as _fmt
from repro.uncertainty import mean as _mean
from repro.uncertainty import pearson as _pearson

# Thresholds, fixed before any number of a real book was looked at (issue 11).
NC_COLLAPSE = 10.0  # held-out NC1 / train NC1: "an order of magnitude"
NC_COMPARABLE = 2.0  # "comparable": the ratio is below 2
NC_FLAT = 0.5  # train NC1 at the end / after epoch 1: "no significant decrease" keeps at least half
SVM_ERROR = 0.1  # directional error to the hard-margin SVM: "not converged" is above 0.1
R_WEAK = 0.3  # |Pearson r| below 0.3 is "not correlated"; r at or above 0.3 is "correlated" (the usual "weak")
R_RATIO = 0.99  # Fig. 4: r > 0.99
GAIN = 0.02  # LLR "improves over" ERM: WGA gain above +0.02; "vice versa" (LLR below ERM): gain below -0.02
CB_GAP = 0.05  # "nearly matches": best ERM and best LLR WGA within 0.05
AFR0_GAP = 0.03  # AFR at gamma 0 vs CB-LLR with upweighting: WGA within 0.03
COLLAPSE = 0.1  # "catastrophic collapse": smoothed test WGA falls by at least 0.1 from its maximum
SMOOTH = 3  # epochs in the centred moving average of a WGA curve (fewer at its two ends)


@dataclass(frozen=True)
class Claim:
    key: str
    section: str  # the notebook that evaluates and glues it
    statement: str  # the paper's claim, paraphrased
    test: str  # the criterion this build applies


_EVERY = " on every dataset of the grid"
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
          "to the SVM direction", f"on every dataset, mean over the seeds whose held-out features are linearly "
          f"separable of the final directional error to the hard-margin SVM > {SVM_ERROR:g} (a dataset with no such "
          "seed is not measurable: its hard-margin SVM does not exist)"),
    Claim("margin_avg_vs_min", "margins", "Table 1: the minimum margin of a group is not correlated with its test "
          "accuracy, its average margin is", f"per group, over (ERM seed, LLR seed) heads: abs(r(minimum margin)) < "
          f"{R_WEAK:g} and r(average margin) >= {R_WEAK:g}; supported when more than half of the groups with a "
          "defined r agree"),
    Claim("ratio_r_celeba", "group_ratio", "Fig. 4: ERM and LLR test WGA correlate with r > 0.99 on CelebA",
          f"Pearson r > {R_RATIO:g} between seed-mean WGA of LLR at held-out ratio r (every ERM ratio) and of ERM "
          "trained at ratio r"),
    Claim("ratio_r_civilcomments", "group_ratio", "Fig. 4: the same on CivilComments",
          f"Pearson r > {R_RATIO:g}, as for CelebA"),
    Claim("ratio_gain_needs_balance", "group_ratio", "Sec. 3.1: LLR improves over ERM when the held-out set has a "
          "higher group ratio than ERM's training set, and vice versa",
          f"per dataset, mean over (ERM ratio, held-out ratio) cells of LLR's WGA - WGA of ERM trained at its ERM "
          f"ratio: > +{GAIN:g} over cells where the held-out ratio is higher and < -{GAIN:g} where it is lower, on "
          "every dataset of the grid"),
    Claim("cb_erm_matches_llr", "class_balance", "Sec. 3.2 / Fig. 5: optimally class-balanced ERM nearly matches "
          "optimally class-balanced LLR on every dataset", "abs(best of 4 ERM balancings - best of 4 LLR runs "
          f"balanced as their ERM (none, subsetting, upsampling, upweighting)) <= {CB_GAP:g}" + _EVERY),
    Claim("afr_gamma0", "class_balance", "Sec. 3.2: AFR with gamma = 0 reduces to CB-LLR with upweighting",
          f"abs(WGA of AFR (gamma 0) - WGA of CB-LLR (upweighting)) <= {AFR0_GAP:g}" + _EVERY),
    Claim("afr_group_balance", "class_balance", "Sec. 3.2: AFR's weights give the held-out set a better group "
          "balance", "mean over seeds of (minority groups' weight share at the largest gamma - their share at "
          "gamma 0, same seed) > 0" + _EVERY),
    Claim("gb_collapse", "appendix_a", "App. A / Fig. 6: group-balanced upsampling and upweighting collapse test "
          "WGA during training on CelebA and CivilComments", f"for all four curves: maximum - final value of the "
          f"seed-mean WGA curve smoothed by a centred {SMOOTH}-epoch moving average (shorter at the ends) >= "
          f"{COLLAPSE:g}"),
    Claim("dfr_beats_cb_erm", "appendix_a", "App. A / Fig. 7: optimally group-balanced DFR beats optimally "
          "class-balanced ERM on every dataset", "best of 3 DFR balancings - best of 3 ERM class balancings > 0"
          + _EVERY),
]
BY_KEY = {c.key: c for c in CLAIMS}


def _seed_table(frame: pd.DataFrame, columns, value: str = "test_acc_wg", seed: str = "seed") -> pd.DataFrame:
    """seeds x columns table of `value` (NaN where a seed lacks a cell)."""
    return frame.pivot_table(index=seed, columns=columns, values=value, aggfunc="mean", dropna=False)


def _has(frame: pd.DataFrame, *datasets) -> bool:
    return len(frame) > 0 and all(d in set(frame["dataset"]) for d in datasets)


def _datasets(*frames) -> list:
    """Datasets of the first frame that every frame has rows for, in order of appearance."""
    names = list(dict.fromkeys(frames[0]["dataset"])) if len(frames[0]) else []
    return [d for d in names if all(len(f) and d in set(f["dataset"]) for f in frames[1:])]


def _per_dataset(results: list) -> tuple[str, str]:
    """(value, verdict) of an 'on every dataset' claim from [(dataset, text, verdict)]."""
    if not results:
        return "n/a", NOT_MEASURABLE
    return "; ".join(f"{d} {t}" for d, t, _ in results), every(v for _, _, v in results)


# ------------------------------------------------------------------ the sections' claims

def neural_collapse(end: pd.DataFrame) -> dict:
    out = {}
    for key, dataset, op, t in (("nc_heldout_waterbirds", "waterbirds", ">=", NC_COLLAPSE),
                                ("nc_heldout_multinli", "multinli", ">=", NC_COLLAPSE),
                                ("nc_none_celeba", "celeba", "<", NC_COMPARABLE),
                                ("nc_none_civilcomments", "civilcomments", "<", NC_COMPARABLE)):
        part = end[end["dataset"] == dataset] if len(end) else end
        est = estimate((part["nc1_heldout_end"] / part["nc1_train_end"]).to_numpy() if len(part) else [], _mean)
        out[key] = (f"ratio {est.text()}", judge(est, op, t))
    if _has(end, "celeba", "civilcomments"):
        flat = [(d, estimate((p["nc1_train_end"] / p["nc1_train_first"]).to_numpy(), _mean))
                for d, p in ((d, end[end["dataset"] == d]) for d in ("celeba", "civilcomments"))]
        out["nc_flat"] = _per_dataset([(d, e.text(), judge(e, ">=", NC_FLAT)) for d, e in flat])
    else:
        out["nc_flat"] = ("n/a", NOT_MEASURABLE)
    return out


def svm_slow(paths: pd.DataFrame) -> tuple[str, str]:
    """Final directional error per dataset, over the seeds whose held-out features are linearly separable
    (a `separable` column; a store without it counts as separable)."""
    if not len(paths):
        return "n/a", NOT_MEASURABLE
    paths = paths if "separable" in paths else paths.assign(separable=True)
    last = paths.sort_values("step").groupby(["dataset", "seed"], sort=False).tail(1)
    results = []
    for dataset, part in last.groupby("dataset", sort=False):
        ok = part["separable"].astype(bool).to_numpy()
        if not ok.any():
            results.append((dataset, "not measurable (held-out features not linearly separable)", NOT_MEASURABLE))
            continue
        est = estimate(part["direction_error"].to_numpy()[ok], _mean)
        note = "" if ok.all() else f" ({ok.sum()} of {len(ok)} seeds separable)"
        results.append((dataset, est.text() + note, judge(est, ">", SVM_ERROR)))
    value, verdict = _per_dataset(results)
    return value, verdict


def margin_avg_vs_min(points: pd.DataFrame) -> tuple[str, str]:
    """Per (dataset, group): |r(min margin, test acc)| < R_WEAK and r(avg margin, test acc) >= R_WEAK, each
    with its interval over (ERM seed, LLR seed) heads; the claim needs more than half of the groups."""
    verdicts = []
    for _, part in (points.groupby(["dataset", "group"], sort=False) if len(points) else []):
        units = part[["margin_min", "margin_avg", "test_acc"]].to_numpy(dtype=float)
        r_min = estimate(units, lambda s: np.abs(_pearson(s[..., 0], s[..., 2])))
        r_avg = estimate(units, lambda s: _pearson(s[..., 1], s[..., 2]))
        verdicts.append(every([judge(r_min, "<", R_WEAK), judge(r_avg, ">=", R_WEAK)]))
    m = sum(v != NOT_MEASURABLE for v in verdicts)
    if not m:
        return "n/a", NOT_MEASURABLE
    yes, maybe = verdicts.count(SUPPORTED), verdicts.count(INCONCLUSIVE)
    value = f"{yes} [{yes}, {yes + maybe}] of {m} groups agree (need more than {m // 2})"
    return value, at_least(m // 2 + 1, verdicts)


def margins(paths: pd.DataFrame, points: pd.DataFrame) -> dict:
    return {"svm_slow": svm_slow(paths), "margin_avg_vs_min": margin_avg_vs_min(points)}


def group_ratio(erm_rows: pd.DataFrame, llr_rows: pd.DataFrame) -> dict:
    """Figure 4's claims per dataset, over seeds (a seed's ERM at every ratio and its LLR heads are one unit)."""
    out, gains = {}, []
    r_est = {}
    for dataset in _datasets(llr_rows, erm_rows):
        erm = _seed_table(erm_rows[erm_rows["dataset"] == dataset], "ratio")
        llr = _seed_table(llr_rows[llr_rows["dataset"] == dataset], ["erm_ratio", "llr_ratio"])
        seeds = erm.index.intersection(llr.index)
        units = np.hstack([erm.loc[seeds].to_numpy(), llr.loc[seeds].to_numpy()])
        ratios, cells, n = list(erm.columns), list(llr.columns), erm.shape[1]
        at_llr = [ratios.index(rl) if rl in ratios else -1 for _, rl in cells]  # ERM trained at the held-out ratio
        at_erm = [ratios.index(re) if re in ratios else -1 for re, _ in cells]  # ERM at the LLR's ERM ratio
        if min(at_llr + at_erm, default=-1) < 0:
            continue  # a ratio ERM was not trained at

        def corr(s, n=n, at_llr=at_llr):
            m = _mean(s)
            return _pearson(m[:, at_llr], m[:, n:])

        r_est[dataset] = estimate(units, corr)
        up = [re < rl for re, rl in cells]
        down = [re > rl for re, rl in cells]
        if any(up) and any(down):
            def gain(s, mask, n=n, at_erm=at_erm):
                m = _mean(s)
                return (m[:, n:] - m[:, at_erm])[:, mask].mean(axis=1)

            e_up, e_down = estimate(units, lambda s: gain(s, up)), estimate(units, lambda s: gain(s, down))
            gains.append((dataset, f"{e_up.text()} where higher, {e_down.text()} where lower",
                          every([judge(e_up, ">", GAIN), judge(e_down, "<", -GAIN)])))
    for key, dataset in (("ratio_r_celeba", "celeba"), ("ratio_r_civilcomments", "civilcomments")):
        est = r_est.get(dataset, Estimate(np.nan, np.nan, np.nan, 0))
        out[key] = (f"r = {est.text()}", judge(est, ">", R_RATIO))
    out["ratio_gain_needs_balance"] = _per_dataset(gains)
    return out


def _best_gap(erm: pd.DataFrame, other: pd.DataFrame, stat) -> Estimate:
    """Estimate of stat(best seed-mean WGA of ERM configs, best of the other side's), seeds as units."""
    seeds = erm.index.intersection(other.index)
    n = erm.shape[1]
    units = np.hstack([erm.loc[seeds].to_numpy(), other.loc[seeds].to_numpy()])

    def best(s):
        m = _mean(s)
        return stat(np.nanmax(m[:, :n], axis=1), np.nanmax(m[:, n:], axis=1))
    return estimate(units, best)


def class_balance(erm_rows, llr_rows, afr_rows, mass, minority: dict) -> dict:
    out, match, afr0 = {}, [], []
    cb = llr_rows[(llr_rows["erm_balance"] == "none") & (llr_rows["llr_balance"] == "upweighting")]
    same = llr_rows[llr_rows["erm_balance"] == llr_rows["llr_balance"]]  # CB-LLR as LaBonte et al. (2023) run it
    for dataset in _datasets(erm_rows, same):
        est = _best_gap(_seed_table(erm_rows[erm_rows["dataset"] == dataset], "balance"),
                        _seed_table(same[same["dataset"] == dataset], "erm_balance"), lambda a, b: np.abs(a - b))
        match.append((dataset, est.text(), judge(est, "<=", CB_GAP)))
    out["cb_erm_matches_llr"] = _per_dataset(match)
    afr = afr_rows[afr_rows["gamma"] == 0] if len(afr_rows) else afr_rows
    for dataset in _datasets(afr, cb):
        est = _best_gap(_seed_table(afr[afr["dataset"] == dataset], "gamma"),
                        _seed_table(cb[cb["dataset"] == dataset], "llr_balance"), lambda a, b: np.abs(a - b))
        afr0.append((dataset, est.text(), judge(est, "<=", AFR0_GAP)))
    out["afr_gamma0"] = _per_dataset(afr0)
    out["afr_group_balance"] = afr_group_balance(mass, minority)
    return out


def afr_group_balance(mass: pd.DataFrame, minority: dict) -> tuple[str, str]:
    """Per seed, the minority groups' share of AFR's weight at the largest gamma minus at gamma 0."""
    gammas = mass["gamma"].dropna() if len(mass) else pd.Series(dtype=float)
    top = gammas.max() if len(gammas) else np.nan
    if not (top > 0 and (gammas == 0).any()):
        return "n/a", NOT_MEASURABLE
    results = []
    for dataset, part in mass.groupby("dataset", sort=False):
        minor = part[part["group"].isin(minority[dataset])]
        share = minor.groupby(["seed", "gamma"])["weight_share"].sum().unstack()
        if 0 not in share or top not in share:
            continue
        est = estimate((share[top] - share[0]).to_numpy(), _mean)
        results.append((dataset, f"{_fmt(share[0].mean())} -> {_fmt(share[top].mean())}, rise {est.text()}",
                        judge(est, ">", 0.0)))
    value, verdict = _per_dataset(results)
    return (f"gamma 0 -> {_fmt(top)}: {value}" if results else value), verdict


def smooth(curve: np.ndarray, width: int = SMOOTH) -> np.ndarray:
    """Centred moving average along the last axis (epochs); the window shrinks at both ends."""
    e = curve.shape[-1]
    idx = np.arange(e)
    window = np.abs(idx[:, None] - idx[None, :]) <= width // 2  # (epoch, epoch averaged)
    return curve @ (window / window.sum(axis=1, keepdims=True)).T


def _collapse(stack):
    s = smooth(np.nanmean(stack, axis=1))  # seed-mean curve per resample: (k, epochs)
    return s.max(axis=1) - s[:, -1]


def appendix_a(curves: pd.DataFrame, bars: pd.DataFrame) -> dict:
    out, drops = {}, []
    for dataset in ("celeba", "civilcomments"):
        for method in ("upsampling", "upweighting"):
            part = curves[(curves["dataset"] == dataset) & (curves["balance"] == method)] if len(curves) else curves
            if len(part):
                est = estimate(_seed_table(part, "epoch").sort_index(axis=1).to_numpy(), _collapse)
                drops.append((f"{dataset} {method}", est.text(), judge(est, ">=", COLLAPSE)))
    out["gb_collapse"] = _per_dataset(drops) if len(drops) == 4 else ("n/a", NOT_MEASURABLE)
    beats = []
    dfr, erm = (bars[bars["method"] == m] if len(bars) else bars for m in ("group-balanced DFR", "class-balanced ERM"))
    for dataset in _datasets(dfr, erm):
        est = _best_gap(_seed_table(erm[erm["dataset"] == dataset], "balance"),
                        _seed_table(dfr[dfr["dataset"] == dataset], "balance"), lambda a, b: b - a)
        beats.append((dataset, est.text(), judge(est, ">", 0.0)))
    out["dfr_beats_cb_erm"] = _per_dataset(beats)
    return out


# Badge of each verdict (sphinx-design roles); a verdict not listed here gets the neutral "info" colour.
BADGES = {SUPPORTED: "success", NOT_SUPPORTED: "danger", "inconclusive": "warning", NOT_MEASURABLE: "muted"}


def badge(verdict: str) -> str:
    """The verdict as a coloured MyST badge."""
    return f"{{bdg-{BADGES.get(verdict, 'info')}}}`{verdict}`"


def table(results: dict) -> pd.DataFrame:
    """The section's claims as a table: paper's claim, criterion, this build's value, verdict (as a badge)."""
    return pd.DataFrame([{"claim (paper)": BY_KEY[k].statement, "criterion": BY_KEY[k].test, "this build": v,
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

def glued_verdicts(folder: Path) -> dict:
    """claim key -> verdict, read from the glued outputs of the executed notebooks in `folder`."""
    import json

    found = {}
    for claim in CLAIMS:
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


def counts_markdown(verdicts: dict) -> str:
    """'N claims: [k supported] [m not supported] ...' as badges, in the order of BADGES; claims without a
    glued verdict are counted as not evaluated."""
    counts = {v: 0 for v in BADGES}
    for v in verdicts.values():
        counts[v] = counts.get(v, 0) + 1
    parts = [f"{{bdg-{BADGES.get(v, 'info')}}}`{n} {v}`" for v, n in counts.items() if n]
    missing = len(CLAIMS) - len(verdicts)
    if missing:
        parts.append(f"{{bdg-light}}`{missing} not evaluated in this build`")
    return f"{len(CLAIMS)} claims: " + " ".join(parts)


def stage_counts(stage: Path) -> str:
    """Count the verdicts glued by the executed notebooks under `stage`/book and store the line as the MyST
    substitution `verdict_counts` of the staged `_config.yml` (the front page and the scorecard show it)."""
    import yaml

    from repro import files

    line = counts_markdown(glued_verdicts(Path(stage) / "book"))
    path = Path(stage) / "_config.yml"
    config = files.read_yaml(path)
    config.setdefault("parse", {}).setdefault("myst_substitutions", {})["verdict_counts"] = line
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return line


SCORECARD_HEAD = f"""# Reproduction scorecard

**This build:** {{{{ verdict_counts }}}}

Every claim of the paper that a number can check, with the number this build measured and a verdict,
grouped by the page that checks it. The "this build" and "verdict" cells are pasted (myst-nb `glue`) from
the section notebooks, which compute them from runs in the run store; nothing in those two columns is
typed, and the counts above are counted from the same pasted verdicts. The criterion column is the test
applied, with its threshold; the thresholds were fixed in `repro.claims` before any number of a real build
was looked at, and they are the same for every profile.

**Uncertainty.** Each measured value is followed by its {LEVEL:.0%} interval, `value [low, high]`: the
{(1 - LEVEL) / 2:.0%} and {(1 + LEVEL) / 2:.0%} quantiles of the statistic recomputed on bootstrap resamples of its independent units. The unit is the seed
(a seed's runs at every configuration are resampled together), or for Table 1 one (ERM seed, LLR seed)
head. With n units all n^n resamples are enumerated when n^n <= {EXACT_MAX} (27 for 3 seeds, so the interval is
exact and the same on every build), else {DRAWS} draws of a generator with a fixed seed. A verdict is
*supported* when the whole interval satisfies the criterion, *not supported* when none of it does, and
*inconclusive* when the interval straddles the threshold, or when a single run gives no interval at all.
A claim made of several tests (per dataset, per curve, per group) is supported when all of them are (Table 1:
more than half of the groups), not supported when a test fails (too few groups can still agree), else
inconclusive; the counts above include the inconclusive ones.

How wide are the intervals? With the paper's 3 seeds, the {LEVEL:.0%} interval of a mean over seeds runs from
(2 x smallest + middle) / 3 to (middle + 2 x largest) / 3 of the three seeds' values: two thirds of their
range. It shows how far three runs disagree, not a confidence interval with {LEVEL:.0%} coverage: a bootstrap over
3 units is known to be too narrow, so a verdict that is not inconclusive here may still turn with more
seeds. "n/a" marks a statistic that is undefined in this build: a dataset of the claim is not in the
profile's grid, a correlation has nothing to correlate, or (Figure 3) the hard-margin SVM does not exist
because the held-out features are not linearly separable.

Criteria that test the paper's words: "comparable" NC1 is a ratio below {NC_COMPARABLE:g}; "not correlated" is
abs(r) < {R_WEAK:g} and "correlated" r >= {R_WEAK:g} (applied to the paper's own Table 1, 4 of its 18 groups meet both);
"improves" and "vice versa" are WGA gains above +{GAIN:g} and below -{GAIN:g}, per dataset; "optimally
class-balanced" takes the best of the same 4 balancings (none, subsetting, upsampling, upweighting) on
both sides, LLR balanced as its ERM, as in LaBonte et al. (2023); AFR's group balance is the rise of the
minority groups' weight share from gamma 0 (class balancing alone) to the largest gamma, paired by seed;
"catastrophic collapse" is measured on the seed-mean WGA curve smoothed by a centred {SMOOTH}-epoch moving
average, because the maximum of a noisy curve is biased upward by its noise: averaging {SMOOTH} neighbouring
epochs divides that noise by about the square root of {SMOOTH} and still keeps a collapse that lasts several epochs.

```{{admonition}} Read the verdicts with the profile in mind
:class: warning
This build used the **{{{{ profile }}}}** profile. On `cpu` and `smoke` the data are synthetic twins and the
models small (the deviations page says which): a verdict there says whether the paper's mechanism shows up
on the twins, not whether the paper's numbers replicate. Verdicts fall as they fall; none is tuned.
```
"""


def scorecard_markdown() -> str:
    """The text of book/scorecard.md: per section page, one row per claim, its measured cells pasted from the
    section notebook."""
    out = [SCORECARD_HEAD]
    for section in dict.fromkeys(c.section for c in CLAIMS):
        out.append(f"\n## []({section}.ipynb)\n\n| claim (paper) | criterion | this build | verdict |\n|---|---|---|---|")
        out += [f"| {c.statement} | {c.test} | {{glue:text}}`{c.section}.ipynb::{c.key}_value:s` | "
                f"{{glue}}`{c.section}.ipynb::{c.key}_verdict` |" for c in CLAIMS if c.section == section]
    return "\n".join(out) + "\n"
