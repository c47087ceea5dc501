"""Claim verdicts on hand-built tables: every criterion comes out supported, not supported, inconclusive (its 90%
interval over seeds straddles the threshold) and not measurable (data missing)."""
import numpy as np
import pandas as pd
import pytest

from repro import claims, sections

S, N, I, NA = claims.SUPPORTED, claims.NOT_SUPPORTED, claims.INCONCLUSIVE, claims.NOT_MEASURABLE
SEEDS = (1, 2, 3)


# ------------------------------------------------------------------ intervals

def test_three_seed_interval_is_exact_deterministic_and_holds_the_point():
    x = np.array([0.2, 0.5, 0.6])
    est = claims.estimate(x, claims._mean)
    assert est == claims.estimate(x, claims._mean)  # all 27 resamples: the same bits every time
    assert len(claims.resamples(3)) == 27
    assert est.point == pytest.approx(x.mean())
    assert (est.lo, est.hi) == pytest.approx(((2 * 0.2 + 0.5) / 3, (0.5 + 2 * 0.6) / 3))  # as the page says
    assert est.lo <= est.point <= est.hi


def test_seeded_interval_for_many_units_is_deterministic_and_holds_the_point():
    units = np.random.default_rng(5).normal(size=(9, 2))  # 9 (ERM seed, LLR seed) heads: 9**9 resamples, drawn
    corr = lambda s: claims._pearson(s[..., 0], s[..., 1])  # noqa: E731
    a, b = claims.estimate(units, corr), claims.estimate(units, corr)
    assert a == b and len(claims.resamples(9)) == claims.DRAWS
    assert a.lo <= a.point <= a.hi and a.point == pytest.approx(np.corrcoef(units.T)[0, 1])
    skewed = claims.estimate(np.array([[0.0], [0.0], [0.0], [0.0], [1.0]]), lambda s: s[..., 0].max(axis=1))
    assert skewed.lo <= skewed.point <= skewed.hi  # the percentile interval widened to hold the point


def test_judge_and_combinations():
    est = claims.Estimate
    assert claims.judge(est(1.0, 0.5, 1.5, 3), ">", 0.4) == S
    assert claims.judge(est(1.0, 0.5, 1.5, 3), ">", 1.6) == N
    assert claims.judge(est(1.0, 0.5, 1.5, 3), ">", 0.9) == I
    assert claims.judge(est(1.0, 0.5, 1.5, 3), "<=", 1.5) == S
    assert claims.judge(est(1.0, np.nan, np.nan, 1), ">", 0.0) == I  # one run: no interval
    assert claims.judge(est(np.nan, np.nan, np.nan, 0), ">", 0.0) == NA
    assert claims.every([S, S, NA]) == S and claims.every([S, I]) == I and claims.every([I, N]) == N
    assert claims.every([NA]) == NA
    assert claims.at_least(2, [S, S, N]) == S and claims.at_least(2, [S, I, N]) == I and claims.at_least(2, [S, N, N]) == N


# ------------------------------------------------------------------ Section 2.1

def _end(ratios: dict, flat: dict | None = None) -> pd.DataFrame:
    """dataset -> per-seed held-out/train NC1 ratios (and train end/first ratios)."""
    flat = flat or {}
    return pd.DataFrame([{"dataset": d, "seed": s, "nc1_train_first": 1.0, "nc1_train_end": f,
                          "nc1_heldout_end": r * f}
                         for d, rs in ratios.items() for s, r, f in zip(SEEDS, rs, flat.get(d, [1.0] * 3))])


@pytest.mark.parametrize("key,dataset,ratios,verdict", [
    ("nc_heldout_waterbirds", "waterbirds", [20, 22, 25], S), ("nc_heldout_waterbirds", "waterbirds", [3, 4, 5], N),
    ("nc_heldout_waterbirds", "waterbirds", [5, 10, 20], I),  # interval [6.7, 16.7] straddles 10
    ("nc_heldout_multinli", "multinli", [20, 22, 25], S),
    ("nc_none_celeba", "celeba", [1.0, 1.1, 1.2], S), ("nc_none_celeba", "celeba", [3, 4, 5], N),
    ("nc_none_celeba", "celeba", [1, 2, 3], I),  # interval [1.3, 2.7] straddles 2
    ("nc_none_civilcomments", "civilcomments", [1.0, 1.1, 1.2], S),
])
def test_neural_collapse_ratios(key, dataset, ratios, verdict):
    out = claims.neural_collapse(_end({dataset: ratios}))
    assert out[key][1] == verdict
    assert out[key][0].startswith("ratio ") and "[" in out[key][0]
    others = {"nc_heldout_waterbirds", "nc_heldout_multinli", "nc_none_celeba", "nc_none_civilcomments"} - {key}
    assert all(out[k] == ("ratio n/a", NA) for k in others)  # not in the grid


def test_nc_flat():
    def flat(celeba, civil):
        return claims.neural_collapse(_end({"celeba": [1, 1, 1], "civilcomments": [1, 1, 1]},
                                           {"celeba": celeba, "civilcomments": civil}))["nc_flat"][1]

    assert flat([0.9, 1.0, 1.1], [0.8, 0.8, 0.9]) == S
    assert flat([0.9, 1.0, 1.1], [0.1, 0.2, 0.3]) == N
    assert flat([0.9, 1.0, 1.1], [0.3, 0.5, 0.8]) == I  # civilcomments: [0.37, 0.7] straddles 0.5
    assert claims.neural_collapse(_end({"celeba": [1, 1, 1]}))["nc_flat"] == ("n/a", NA)


# ------------------------------------------------------------------ Section 2.2

def _paths(final: dict, separable: dict | None = None) -> pd.DataFrame:
    rows = [{"dataset": d, "seed": s, "step": step, "direction_error": e + (1.0 if step == 10 else 0.0)}
            for d, es in final.items() for s, e in zip(SEEDS, es) for step in (100, 10)]  # unsorted steps
    frame = pd.DataFrame(rows)
    if separable is not None:
        frame["separable"] = [separable.get(d, True) for d in frame["dataset"]]
    return frame


def test_svm_slow():
    assert claims.svm_slow(_paths({"waterbirds": [0.3, 0.35, 0.4], "celeba": [0.2, 0.3, 0.2]}))[1] == S
    assert claims.svm_slow(_paths({"waterbirds": [0.3, 0.35, 0.4], "celeba": [0.01, 0.02, 0.03]}))[1] == N
    assert claims.svm_slow(_paths({"waterbirds": [0.05, 0.1, 0.2]}))[1] == I  # [0.067, 0.17] straddles 0.1
    assert claims.svm_slow(pd.DataFrame()) == ("n/a", NA)


def test_svm_slow_reports_non_separable_held_out_sets():
    value, verdict = claims.svm_slow(_paths({"waterbirds": [0.3, 0.35, 0.4], "celeba": [0.01, 0.02, 0.03]},
                                            {"celeba": False}))
    assert verdict == S and "celeba not measurable (held-out features not linearly separable)" in value
    value, verdict = claims.svm_slow(_paths({"celeba": [0.3, 0.3, 0.3]}, {"celeba": False}))
    assert verdict == NA and "not linearly separable" in value
    frame = _paths({"waterbirds": [0.3, 0.35, 0.4]})
    frame["separable"] = frame["seed"] != 2  # one seed's held-out features are not separable: left out
    value, verdict = claims.svm_slow(frame)
    assert "(2 of 3 seeds separable)" in value and verdict == S


def _points(groups: dict, n: int = 100) -> pd.DataFrame:
    """dataset/group -> (r_min kind, r_avg kind) with n heads each: 'zero' (r = 0 exactly), 'one' (r = 1)."""
    rng = np.random.default_rng(0)
    rows = []
    for (dataset, group), (kind_min, kind_avg) in groups.items():
        acc = rng.normal(size=n)
        noise = rng.normal(size=n)
        zero = noise - (noise @ (acc - acc.mean())) / ((acc - acc.mean()) @ (acc - acc.mean())) * (acc - acc.mean())
        pick = {"zero": zero, "one": 2 * acc + 1}
        rows += [{"dataset": dataset, "group": group, "erm_seed": i // 10, "llr_seed": i % 10,
                  "margin_min": pick[kind_min][i], "margin_avg": pick[kind_avg][i], "test_acc": acc[i]}
                 for i in range(n)]
    return pd.DataFrame(rows)


def test_margin_avg_vs_min():
    agree, disagree = ("zero", "one"), ("one", "one")
    value, verdict = claims.margin_avg_vs_min(_points({("w", 0): agree, ("w", 1): agree, ("c", 0): disagree}))
    assert verdict == S and value.startswith("2 [2, 2] of 3 groups agree")
    assert claims.margin_avg_vs_min(_points({("w", 0): agree, ("w", 1): disagree, ("c", 0): disagree}))[1] == N
    # the signed mean no longer decides: r_min = +1 and -1 cancel, but neither group agrees
    flipped = _points({("w", 0): disagree, ("w", 1): disagree})
    flipped.loc[flipped["group"] == 1, "margin_min"] *= -1
    assert claims.margin_avg_vs_min(flipped)[1] == N
    few = _points({("w", 0): agree, ("w", 1): agree}, n=4)  # 4 heads: intervals too wide to tell
    value, verdict = claims.margin_avg_vs_min(few)
    assert verdict == I and value.startswith("0 [0, 2] of 2 groups")
    constant = _points({("w", 0): agree})
    constant["test_acc"] = 0.5
    assert claims.margin_avg_vs_min(constant) == ("n/a", NA)


def test_margin_correlations_pool_all_heads():
    points = pd.DataFrame({"dataset": "waterbirds", "group": 0, "erm_seed": [1, 1, 2, 2], "llr_seed": [1, 2, 1, 2],
                           "margin_min": [0.1, 0.1, 0.1, 0.2], "margin_avg": [1.0, 2.0, 3.0, 4.0],
                           "test_acc": [0.1, 0.2, 0.3, 0.4]})
    corr = sections.margin_correlations(points)
    assert corr["n_points"].iloc[0] == 4 and np.isclose(corr["r_avg_margin"].iloc[0], 1.0)
    assert set(claims.margins(pd.DataFrame(), points)) == {"svm_slow", "margin_avg_vs_min"}


# ------------------------------------------------------------------ Section 3.1

RATIOS = (0.1, 0.5, 1.0)


def _ratio_rows(llr_wga, dataset="celeba"):
    """ERM at ratio r has WGA r/2; LLR's WGA is llr_wga(seed, erm_ratio, llr_ratio)."""
    erm = pd.DataFrame([{"dataset": dataset, "seed": s, "ratio": r, "test_acc_wg": r / 2} for s in SEEDS for r in RATIOS])
    llr = pd.DataFrame([{"dataset": dataset, "seed": s, "erm_ratio": re, "llr_ratio": rl,
                         "test_acc_wg": llr_wga(s, re, rl)} for s in SEEDS for re in RATIOS for rl in RATIOS])
    return erm, llr


def test_ratio_correlation_and_gain():
    erm, llr = _ratio_rows(lambda s, re, rl: rl / 2)  # LLR equals ERM trained at the held-out ratio
    corr = sections.ratio_correlations(erm, llr)
    assert corr["pearson_r"].iloc[0] == 1.0 and corr["n_points"].iloc[0] == 9
    out = claims.group_ratio(erm, llr)
    assert out["ratio_r_celeba"][1] == S and out["ratio_r_celeba"][0].startswith("r = 1 [1, 1]")
    assert out["ratio_r_civilcomments"] == ("r = n/a", NA)
    assert out["ratio_gain_needs_balance"][1] == S  # gains where the held-out set is better, losses where worse
    out = claims.group_ratio(*_ratio_rows(lambda s, re, rl: re / 2 + 0.1))  # LLR helps whatever the balance
    assert out["ratio_gain_needs_balance"][1] == N and out["ratio_r_celeba"][1] == N
    out = claims.group_ratio(*_ratio_rows(lambda s, re, rl: max(re, rl) / 2))  # helps, but never hurts: no vice versa
    assert out["ratio_gain_needs_balance"][1] == N


def test_ratio_claims_inconclusive_and_per_dataset():
    up = {1: -0.05, 2: 0.05, 3: 0.2}  # gain where the held-out set is better: [-0.017, 0.15] straddles 0.02

    def noisy(s, re, rl):
        return re / 2 + (up[s] if rl > re else -0.1 if rl < re else 0.0)

    out = claims.group_ratio(*_ratio_rows(noisy))
    assert out["ratio_gain_needs_balance"][1] == I
    wiggle = {1: [0, 0, 0], 2: [0.1, -0.1, 0.0], 3: [-0.3, 0.3, 0.0]}  # seed 3 alone breaks the line
    out = claims.group_ratio(*_ratio_rows(lambda s, re, rl: rl / 2 + wiggle[s][RATIOS.index(rl)]))
    assert out["ratio_r_celeba"][1] == I, out["ratio_r_celeba"]
    # per dataset, not pooled: a dataset where LLR helps everywhere fails the claim even if another supports it
    good, bad = _ratio_rows(lambda s, re, rl: rl / 2), _ratio_rows(lambda s, re, rl: re / 2 + 0.3, "waterbirds")
    out = claims.group_ratio(pd.concat([good[0], bad[0]]), pd.concat([good[1], bad[1]]))
    assert out["ratio_gain_needs_balance"][1] == N and "celeba" in out["ratio_gain_needs_balance"][0]


# ------------------------------------------------------------------ Section 3.2

BAL = ("none", "subsetting", "upsampling", "upweighting")


def _balance_rows(erm_best, llr_best, afr0=None, cb_up=None):
    """Per seed: ERM's best balancing reaches erm_best[seed], LLR balanced as its ERM llr_best[seed]; a
    mismatched LLR run (ERM none, LLR subsetting) scores 0.99, which the criterion must not count."""
    erm = pd.DataFrame([{"dataset": "celeba", "seed": s, "balance": b, "test_acc_wg": erm_best[i] - 0.1 * (b != "none")}
                        for i, s in enumerate(SEEDS) for b in BAL])
    llr = [{"dataset": "celeba", "seed": s, "erm_balance": b, "llr_balance": b, "test_acc_wg": llr_best[i] - 0.1 * (b != "none")}
           for i, s in enumerate(SEEDS) for b in BAL]
    llr += [{"dataset": "celeba", "seed": s, "erm_balance": "none", "llr_balance": "subsetting", "test_acc_wg": 0.99}
            for s in SEEDS]
    llr += [{"dataset": "celeba", "seed": s, "erm_balance": "none", "llr_balance": "upweighting",
             "test_acc_wg": (cb_up or [0.5] * 3)[i]} for i, s in enumerate(SEEDS)]
    afr = pd.DataFrame([{"dataset": "celeba", "seed": s, "gamma": g, "test_acc_wg": (afr0 or [0.5] * 3)[i] + g / 10}
                        for i, s in enumerate(SEEDS) for g in (0.0, 4.0)])
    return erm, pd.DataFrame(llr), afr


def _mass(rise, base=0.3):
    """Minority groups (1, 2) hold `base` of AFR's weight at gamma 0 and base + rise[seed] at gamma 4."""
    rows = []
    for i, s in enumerate(SEEDS):
        for gamma, share in ((None, 0.1), (0.0, base), (4.0, base + rise[i])):
            rows += [{"dataset": "celeba", "seed": s, "gamma": gamma, "group": k,
                      "weight_share": share / 2 if k in (1, 2) else (1 - share) / 2} for k in range(4)]
    return pd.DataFrame(rows)


def _cb(erm_best, llr_best, afr0=None, cb_up=None, rise=(0.2, 0.2, 0.2)):
    return claims.class_balance(*_balance_rows(erm_best, llr_best, afr0, cb_up), _mass(rise), {"celeba": [1, 2]})


def test_cb_erm_matches_llr():
    assert _cb([0.8] * 3, [0.81] * 3)["cb_erm_matches_llr"][1] == S  # the 0.99 of a mismatched LLR run is not counted
    assert _cb([0.7] * 3, [0.95] * 3)["cb_erm_matches_llr"][1] == N
    assert _cb([0.70, 0.76, 0.80], [0.8] * 3)["cb_erm_matches_llr"][1] == I  # gap [0.013, 0.08] straddles 0.05
    erm, llr, afr = _balance_rows([0.8] * 3, [0.8] * 3)
    out = claims.class_balance(erm.iloc[:0], llr, afr, _mass([0.2] * 3), {"celeba": [1, 2]})
    assert out["cb_erm_matches_llr"] == ("n/a", NA)


def test_afr_gamma0():
    assert _cb([0.8] * 3, [0.8] * 3, afr0=[0.5] * 3, cb_up=[0.51] * 3)["afr_gamma0"][1] == S
    assert _cb([0.8] * 3, [0.8] * 3, afr0=[0.5] * 3, cb_up=[0.6] * 3)["afr_gamma0"][1] == N
    assert _cb([0.8] * 3, [0.8] * 3, afr0=[0.5, 0.53, 0.56], cb_up=[0.5] * 3)["afr_gamma0"][1] == I
    erm, llr, afr = _balance_rows([0.8] * 3, [0.8] * 3)
    out = claims.class_balance(erm, llr, afr[afr["gamma"] > 0], _mass([0.2] * 3), {"celeba": [1, 2]})
    assert out["afr_gamma0"] == ("n/a", NA)


def test_afr_group_balance():
    out = _cb([0.8] * 3, [0.8] * 3, rise=(0.2, 0.2, 0.2))["afr_group_balance"]
    assert out[1] == S and "0.3 -> 0.5" in out[0]
    # minority share above its share of examples (0.1) but falling with gamma: class balancing alone, not AFR
    assert _cb([0.8] * 3, [0.8] * 3, rise=(-0.1, -0.1, -0.1))["afr_group_balance"][1] == N
    assert _cb([0.8] * 3, [0.8] * 3, rise=(-0.1, 0.05, 0.1))["afr_group_balance"][1] == I  # [-0.05, 0.083]
    mass = _mass([0.2] * 3)
    assert claims.afr_group_balance(mass[mass["gamma"] != 0], {"celeba": [1, 2]}) == ("n/a", NA)


# ------------------------------------------------------------------ Appendix A

def _curves(ends, peak=0.8, epochs=10, spike=False):
    """Per seed: WGA rises to `peak` by epoch 3, holds, and ends (last two epochs) at ends[seed]."""
    rows = []
    for dataset in ("celeba", "civilcomments"):
        for balance in ("upsampling", "upweighting"):
            for i, s in enumerate(SEEDS):
                for e in range(1, epochs + 1):
                    wga = min(peak, 0.2 * e) if e <= epochs - 2 else ends[i]
                    if spike:
                        wga = 0.5 + 0.25 * (e == 5)
                    rows.append({"dataset": dataset, "seed": s, "balance": balance, "epoch": e, "test_acc_wg": wga})
    return pd.DataFrame(rows)


def test_gb_collapse():
    assert claims.appendix_a(_curves([0.3] * 3), pd.DataFrame(columns=["method"]))["gb_collapse"][1] == S
    assert claims.appendix_a(_curves([0.8] * 3), pd.DataFrame(columns=["method"]))["gb_collapse"][1] == N
    assert claims.appendix_a(_curves([0.8, 0.7, 0.55]), pd.DataFrame(columns=["method"]))["gb_collapse"][1] == I
    # a one-epoch spike of +0.25 is noise, not a collapse: smoothed, the drop is 0.25 / 3 < 0.1
    assert claims.appendix_a(_curves([0.5] * 3, spike=True), pd.DataFrame(columns=["method"]))["gb_collapse"][1] == N
    curves = _curves([0.3] * 3)
    out = claims.appendix_a(curves[curves["dataset"] == "celeba"], pd.DataFrame(columns=["method"]))
    assert out["gb_collapse"] == ("n/a", NA)


def test_smoothing_is_a_centred_moving_average():
    assert np.allclose(claims.smooth(np.array([[0.0, 3.0, 0.0, 3.0]])), [[1.5, 1.0, 2.0, 1.5]])


def _bars(dfr, erm=(0.7, 0.7, 0.7)):
    rows = [{"dataset": "waterbirds", "seed": s, "balance": b, "method": m, "test_acc_wg": v[i] - 0.1 * (b != "upsampling")}
            for m, v in (("group-balanced DFR", dfr), ("class-balanced ERM", erm))
            for i, s in enumerate(SEEDS) for b in BAL[1:]]
    rows += [{"dataset": "waterbirds", "seed": s, "balance": "upsampling", "method": "another method", "test_acc_wg": 1.0}
             for s in SEEDS]  # a method the claim does not name is ignored
    return pd.DataFrame(rows)


def test_dfr_beats_cb_erm():
    curves = pd.DataFrame(columns=["dataset", "balance"])
    assert claims.appendix_a(curves, _bars([0.9] * 3))["dfr_beats_cb_erm"][1] == S
    assert claims.appendix_a(curves, _bars([0.6] * 3))["dfr_beats_cb_erm"][1] == N
    assert claims.appendix_a(curves, _bars([0.65, 0.72, 0.8]))["dfr_beats_cb_erm"][1] == I  # [-0.027, 0.073]
    bars = _bars([0.9] * 3)
    assert claims.appendix_a(curves, bars[bars["method"] != "group-balanced DFR"])["dfr_beats_cb_erm"] == ("n/a", NA)
    assert claims.appendix_a(curves, pd.DataFrame())["dfr_beats_cb_erm"] == ("n/a", NA)


def test_every_criterion_is_tested_here():
    import inspect
    import sys

    source = inspect.getsource(sys.modules[__name__])
    assert all(c.key in source or c.key.rsplit("_", 1)[0] in source for c in claims.CLAIMS)


def test_glue_refuses_unknown_claims_and_pipes():
    import pytest

    with pytest.raises(ValueError, match="unknown claim"):
        claims.glue({"no_such_claim": ("1", claims.SUPPORTED)})
    with pytest.raises(ValueError, match="may not contain"):
        claims.glue({"svm_slow": ("|x|", claims.SUPPORTED)})


def test_every_claim_section_is_a_notebook():
    from repro import book
    from tests.test_book import REPO

    assert {c.section for c in claims.CLAIMS} <= set(book.notebooks(REPO))
    assert len(claims.CLAIMS) >= 10


def _glued(name: str, text: str) -> dict:
    """A display_data output as myst-nb's glue(display=False) writes it into an executed notebook."""
    return {"output_type": "display_data", "data": {"application/papermill.record/text/plain": text,
                                                    "application/papermill.record/text/html": claims.badge_html(text)},
            "metadata": {"scrapbook": {"mime_prefix": "application/papermill.record/", "name": name}}}


def test_verdict_badges_and_counts_from_executed_notebooks(tmp_path):
    import json

    import yaml

    assert claims.badge(claims.SUPPORTED) == "{bdg-success}`supported`"
    assert 'sd-bg-danger' in claims.badge_html(claims.NOT_SUPPORTED) and claims.BADGES["inconclusive"] == "warning"
    (tmp_path / "book").mkdir()
    outputs = [_glued("nc_flat_verdict", claims.SUPPORTED), _glued("nc_heldout_multinli_verdict", claims.NOT_SUPPORTED),
               _glued("nc_none_celeba_verdict", claims.SUPPORTED), _glued("nc_flat_value", "not a verdict")]
    nb = {"cells": [{"cell_type": "code", "outputs": outputs, "source": ""}]}
    (tmp_path / "book" / "neural_collapse.ipynb").write_text(json.dumps(nb))
    (tmp_path / "_config.yml").write_text("parse:\n  myst_substitutions:\n    profile: smoke\n")
    assert claims.glued_verdicts(tmp_path / "book") == {"nc_flat": "supported", "nc_heldout_multinli": "not supported",
                                                         "nc_none_celeba": "supported"}
    line = claims.stage_counts(tmp_path)
    n = len(claims.CLAIMS)
    assert line == (f"{n} claims: {{bdg-success}}`2 supported` {{bdg-danger}}`1 not supported` "
                    f"{{bdg-light}}`{n - 3} not evaluated in this build`")
    config = yaml.safe_load((tmp_path / "_config.yml").read_text())
    assert config["parse"]["myst_substitutions"] == {"profile": "smoke", "verdict_counts": line}


def test_claims_table_shows_badges():
    table = claims.table({"svm_slow": ("min 0.5", claims.SUPPORTED), "margin_avg_vs_min": ("n/a", claims.NOT_MEASURABLE)})
    assert list(table["verdict"]) == ["{bdg-success}`supported`", "{bdg-muted}`not measurable in this profile`"]


def test_claim_texts_fit_a_table_row():
    assert not any("|" in c.statement or "|" in c.test for c in claims.CLAIMS), "a '|' would split a scorecard row"


def test_counts_include_inconclusive():
    line = claims.counts_markdown({"nc_flat": I, "svm_slow": S, "gb_collapse": I})
    assert "{bdg-warning}`2 inconclusive`" in line and "{bdg-success}`1 supported`" in line


def test_undefined_resamples_are_left_out():
    units = np.array([[0.0, 0.0], [1.0, 1.0]])  # 2 heads: r = 1; resamples repeating one head are constant
    est = claims.estimate(units, lambda s: claims._pearson(s[..., 0], s[..., 1]))
    assert (est.point, est.lo, est.hi) == pytest.approx((1.0, 1.0, 1.0))
