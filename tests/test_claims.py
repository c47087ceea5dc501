"""Claim verdicts on hand-built tables: each criterion can come out supported, not supported or unmeasurable."""
import numpy as np
import pandas as pd

from repro import claims, sections


def _end(ratios: dict) -> pd.DataFrame:
    return pd.DataFrame([{"dataset": d, "seed": 1, "nc1_train_end": 1.0, "nc1_heldout_end": r, "nc1_train_first": 1.0}
                         for d, r in ratios.items()])


def test_neural_collapse_verdicts():
    out = claims.neural_collapse(_end({"waterbirds": 20.0, "multinli": 3.0, "celeba": 2.0}))
    assert out["nc_heldout_waterbirds"] == ("ratio 20", claims.SUPPORTED)
    assert out["nc_heldout_multinli"][1] == claims.NOT_SUPPORTED
    assert out["nc_none_celeba"][1] == claims.SUPPORTED
    assert out["nc_none_civilcomments"][1] == claims.NOT_MEASURABLE  # not in the grid
    assert out["nc_flat"][1] == claims.NOT_MEASURABLE


def test_ratio_correlation_and_gain():
    ratios = [0.1, 0.5, 1.0]
    erm = pd.DataFrame([{"dataset": "celeba", "seed": 1, "ratio": r, "test_acc_wg": r / 2} for r in ratios])
    # LLR equals the ERM trained at the held-out ratio: r = 1, and gains only where the held-out set is better
    llr = pd.DataFrame([{"dataset": "celeba", "seed": 1, "erm_ratio": re, "llr_ratio": rl, "test_acc_wg": rl / 2}
                        for re in ratios for rl in ratios])
    corr = sections.ratio_correlations(erm, llr)
    assert corr["pearson_r"].iloc[0] == 1.0 and corr["n_points"].iloc[0] == 9
    out = claims.group_ratio(erm, llr, corr)
    assert out["ratio_r_celeba"][1] == claims.SUPPORTED
    assert out["ratio_r_civilcomments"][1] == claims.NOT_MEASURABLE
    assert out["ratio_gain_needs_balance"][1] == claims.SUPPORTED  # gains only where the held-out set is better
    llr["test_acc_wg"] = llr["erm_ratio"] / 2 + 0.1  # LLR helps whatever the held-out balance
    assert claims.group_ratio(erm, llr, corr)["ratio_gain_needs_balance"][1] == claims.NOT_SUPPORTED


def test_margin_correlations_pool_all_heads():
    points = pd.DataFrame({"dataset": "waterbirds", "group": 0, "erm_seed": [1, 1, 2, 2], "llr_seed": [1, 2, 1, 2],
                           "margin_min": [0.1, 0.1, 0.1, 0.2], "margin_avg": [1.0, 2.0, 3.0, 4.0],
                           "test_acc": [0.1, 0.2, 0.3, 0.4]})
    corr = sections.margin_correlations(points)
    assert corr["n_points"].iloc[0] == 4 and np.isclose(corr["r_avg_margin"].iloc[0], 1.0)
    assert claims.margins(pd.DataFrame(), corr)["margin_avg_vs_min"][1] == claims.SUPPORTED


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
