"""The paper's checkable claims: each is evaluated by its section notebook from that section's tables and
glued (myst-nb) as `<key>_value` and `<key>_verdict`; the scorecard page pastes them, so no number on it is
typed by hand. Verdicts: "supported", "not supported", or "not measurable in this profile" (a dataset of
the claim is not part of the profile's grid, or the statistic is undefined).
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

SUPPORTED, NOT_SUPPORTED, NOT_MEASURABLE = "supported", "not supported", "not measurable in this profile"


@dataclass(frozen=True)
class Claim:
    key: str
    section: str  # the notebook that evaluates and glues it
    statement: str  # the paper's claim, paraphrased
    test: str  # the criterion this build applies


CLAIMS = [
    Claim("nc_heldout_waterbirds", "neural_collapse", "Sec. 2.1: on Waterbirds, held-out NC1 is at least an order "
          "of magnitude above training NC1 at the end of training", "mean over seeds of NC1(held-out) / NC1(train) >= 10"),
    Claim("nc_heldout_multinli", "neural_collapse", "Sec. 2.1: the same holds on MultiNLI",
          "mean over seeds of NC1(held-out) / NC1(train) >= 10"),
    Claim("nc_none_celeba", "neural_collapse", "Sec. 2.1: CelebA features do not collapse; training and held-out "
          "NC1 stay comparable", "mean NC1(held-out) / NC1(train) < 10"),
    Claim("nc_none_civilcomments", "neural_collapse", "Sec. 2.1: the same holds on CivilComments",
          "mean NC1(held-out) / NC1(train) < 10"),
    Claim("nc_flat", "neural_collapse", "Sec. 2.1: training NC1 on CelebA and CivilComments shows no significant "
          "decrease after the first epoch", "NC1(train, end) / NC1(train, epoch 1) >= 0.5 on both"),
    Claim("svm_slow", "margins", "Sec. 2.2 / Fig. 3: after 10x the standard number of steps, LLR has not converged "
          "to the SVM direction", "smallest final directional error over datasets > 0.1"),
    Claim("margin_avg_vs_min", "margins", "Table 1: the average margin of a group is more correlated with its test "
          "accuracy than its minimum margin", "mean Pearson r (average margin) > mean r (minimum margin)"),
    Claim("ratio_r_celeba", "group_ratio", "Fig. 4: ERM and LLR test WGA correlate with r > 0.99 on CelebA",
          "Pearson r > 0.99"),
    Claim("ratio_r_civilcomments", "group_ratio", "Fig. 4: the same on CivilComments", "Pearson r > 0.99"),
    Claim("ratio_gain_needs_balance", "group_ratio", "Sec. 3.1: LLR improves over ERM only when the held-out set "
          "has a higher group ratio than ERM's training set", "mean WGA gain > 0.05 where the held-out ratio is "
          "higher and <= 0.02 elsewhere"),
    Claim("cb_erm_matches_llr", "class_balance", "Sec. 3.2 / Fig. 5: optimally class-balanced ERM nearly matches "
          "optimally class-balanced LLR on every dataset", "largest absolute gap between best ERM WGA and best LLR WGA over datasets <= 0.05"),
    Claim("afr_gamma0", "class_balance", "Sec. 3.2: AFR with gamma = 0 reduces to CB-LLR with upweighting",
          "largest absolute gap between WGA of AFR (gamma 0) and of CB-LLR (upweighting) over datasets <= 0.03"),
    Claim("afr_group_balance", "class_balance", "Sec. 3.2: AFR's weights give the held-out set a better group "
          "balance", "on every dataset the minority groups' weight share at the largest gamma exceeds their "
          "share of examples"),
    Claim("gb_collapse", "appendix_a", "App. A / Fig. 6: group-balanced upsampling and upweighting collapse test "
          "WGA during training on CelebA and CivilComments", "for all four curves: best WGA over epochs - final "
          "WGA >= 0.1"),
    Claim("dfr_beats_cb_erm", "appendix_a", "App. A / Fig. 7: optimally group-balanced DFR beats optimally "
          "class-balanced ERM on every dataset", "min over datasets of best DFR WGA - best ERM WGA > 0"),
]
BY_KEY = {c.key: c for c in CLAIMS}


def _verdict(ok) -> str:
    if ok is None or (isinstance(ok, float) and np.isnan(ok)):
        return NOT_MEASURABLE
    return SUPPORTED if ok else NOT_SUPPORTED


def _has(frame: pd.DataFrame, *datasets) -> bool:
    return len(frame) > 0 and all(d in set(frame["dataset"]) for d in datasets)


def _fmt(x: float) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.3g}"


def neural_collapse(end: pd.DataFrame) -> dict:
    out = {}
    ratio = (end["nc1_heldout_end"] / end["nc1_train_end"]).groupby(end["dataset"]).mean() if len(end) else pd.Series()
    for key, dataset, collapse in (("nc_heldout_waterbirds", "waterbirds", True), ("nc_heldout_multinli", "multinli", True),
                                   ("nc_none_celeba", "celeba", False), ("nc_none_civilcomments", "civilcomments", False)):
        r = ratio.get(dataset, np.nan)
        ok = None if not np.isfinite(r) else (r >= 10 if collapse else r < 10)
        out[key] = (f"ratio {_fmt(r)}", _verdict(ok))
    flat = (end["nc1_train_end"] / end["nc1_train_first"]).groupby(end["dataset"]).mean() if len(end) else pd.Series()
    vals = [flat.get(d, np.nan) for d in ("celeba", "civilcomments")]
    ok = None if not all(np.isfinite(vals)) else min(vals) >= 0.5
    out["nc_flat"] = (f"CelebA {_fmt(vals[0])}, CivilComments {_fmt(vals[1])}", _verdict(ok))
    return out


def margins(paths: pd.DataFrame, corr: pd.DataFrame) -> dict:
    out = {}
    if len(paths):
        last = paths.sort_values("step").groupby(["dataset", "seed"]).tail(1).groupby("dataset")["direction_error"].mean()
        out["svm_slow"] = (f"min over datasets {_fmt(last.min())}", _verdict(last.min() > 0.1))
    else:
        out["svm_slow"] = ("n/a", NOT_MEASURABLE)
    r_min, r_avg = corr["r_min_margin"].mean(), corr["r_avg_margin"].mean()
    ok = None if not (np.isfinite(r_min) and np.isfinite(r_avg)) else r_avg > r_min
    out["margin_avg_vs_min"] = (f"mean r: average {_fmt(r_avg)}, minimum {_fmt(r_min)}", _verdict(ok))
    return out


def group_ratio(erm_rows: pd.DataFrame, llr_rows: pd.DataFrame, corr: pd.DataFrame) -> dict:
    out = {}
    for key, dataset in (("ratio_r_celeba", "celeba"), ("ratio_r_civilcomments", "civilcomments")):
        r = corr.set_index("dataset")["pearson_r"].get(dataset, np.nan)
        out[key] = (f"r = {_fmt(r)}", _verdict(None if not np.isfinite(r) else r > 0.99))
    erm_mean = erm_rows.groupby(["dataset", "ratio"])["test_acc_wg"].mean()
    llr_mean = llr_rows.groupby(["dataset", "erm_ratio", "llr_ratio"])["test_acc_wg"].mean().reset_index()
    gains = llr_mean["test_acc_wg"].to_numpy() - erm_mean.loc[list(zip(llr_mean["dataset"], llr_mean["erm_ratio"]))].to_numpy()
    better = (llr_mean["llr_ratio"] > llr_mean["erm_ratio"]).to_numpy()
    if better.any() and (~better).any():
        up, other = gains[better].mean(), gains[~better].mean()
        out["ratio_gain_needs_balance"] = (f"mean gain {_fmt(up)} (better balanced) vs {_fmt(other)} (not)",
                                           _verdict(up > 0.05 and other <= 0.02))
    else:
        out["ratio_gain_needs_balance"] = ("n/a", NOT_MEASURABLE)
    return out


def class_balance(erm_rows, llr_rows, afr_rows, mass, minority: dict) -> dict:
    out = {}
    best_erm = erm_rows.groupby(["dataset", "balance"])["test_acc_wg"].mean().groupby("dataset").max()
    best_llr = llr_rows.groupby(["dataset", "erm_balance", "llr_balance"])["test_acc_wg"].mean().groupby("dataset").max()
    diff = (best_erm - best_llr).abs()
    out["cb_erm_matches_llr"] = (f"largest gap {_fmt(diff.max())}", _verdict(diff.max() <= 0.05 if len(diff) else None))
    afr0 = afr_rows[afr_rows["gamma"] == 0].groupby("dataset")["test_acc_wg"].mean()
    cb = llr_rows[(llr_rows["erm_balance"] == "none") & (llr_rows["llr_balance"] == "upweighting")]
    gap = (afr0 - cb.groupby("dataset")["test_acc_wg"].mean()).abs()
    out["afr_gamma0"] = (f"largest gap {_fmt(gap.max())}", _verdict(gap.max() <= 0.03 if len(gap) else None))
    shares = []
    top = mass["gamma"].max()
    for dataset, part in mass.groupby("dataset"):
        minor = part["group"].isin(minority[dataset])
        base = part[minor & part["gamma"].isna()]["weight_share"].sum() / part["seed"].nunique()
        high = part[minor & (part["gamma"] == top)]["weight_share"].sum() / part["seed"].nunique()
        shares.append((dataset, base, high))
    ok = all(h > b for _, b, h in shares) if shares else None
    text = "; ".join(f"{d}: {_fmt(b)} -> {_fmt(h)}" for d, b, h in shares)
    out["afr_group_balance"] = (f"minority share of examples -> of weight (gamma {_fmt(top)}): {text}", _verdict(ok))
    return out


def appendix_a(curves: pd.DataFrame, bars: pd.DataFrame) -> dict:
    out = {}
    drops = []
    for dataset in ("celeba", "civilcomments"):
        for method in ("upsampling", "upweighting"):
            part = curves[(curves["dataset"] == dataset) & (curves["balance"] == method)]
            if len(part):
                mean = part.groupby("epoch")["test_acc_wg"].mean().sort_index()
                drops.append(mean.max() - mean.iloc[-1])
    ok = min(drops) >= 0.1 if len(drops) == 4 else None
    out["gb_collapse"] = (f"smallest drop {_fmt(min(drops)) if drops else 'n/a'}", _verdict(ok))
    best = bars.groupby(["dataset", "method", "balance"])["test_acc_wg"].mean().groupby(["dataset", "method"]).max().unstack()
    if {"group-balanced DFR", "class-balanced ERM"} <= set(best.columns):
        margin = (best["group-balanced DFR"] - best["class-balanced ERM"]).min()
        out["dfr_beats_cb_erm"] = (f"smallest margin {_fmt(margin)}", _verdict(margin > 0))
    else:
        out["dfr_beats_cb_erm"] = ("n/a", NOT_MEASURABLE)
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

    line = counts_markdown(glued_verdicts(Path(stage) / "book"))
    path = Path(stage) / "_config.yml"
    config = yaml.safe_load(path.read_text())
    config.setdefault("parse", {}).setdefault("myst_substitutions", {})["verdict_counts"] = line
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return line


SCORECARD_HEAD = """# Reproduction scorecard

**This build:** {{ verdict_counts }}

Every claim of the paper that a number can check, with the number this build measured and a verdict,
grouped by the page that checks it. The "this build" and "verdict" cells are pasted (myst-nb `glue`) from
the section notebooks, which compute them from runs in the run store; nothing in those two columns is
typed, and the counts above are counted from the same pasted verdicts. The criterion column is the test
applied. "n/a" marks a statistic that is undefined in this build: a dataset of the claim is not in the
profile's grid, or a correlation has nothing to correlate (its page says which, next to its table).

```{admonition} Read the verdicts with the profile in mind
:class: warning
This build used the **{{ profile }}** profile. On `cpu` and `smoke` the data are synthetic twins and the
models small networks trained from scratch: a verdict there says whether the paper's mechanism shows up on
the twins, not whether the paper's numbers replicate. Verdicts fall as they fall; none is tuned.
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
