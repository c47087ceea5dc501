"""Every figure is drawn for the text column: 772 px wide at its dpi, at most two panels per row, no text under
9 pt, legends off the data, nothing outside the canvas, one colour per method across Figures 4-7, and a
caption that states only what the figure draws."""
import numpy as np
import pandas as pd
import pytest
from matplotlib.legend import Legend
from matplotlib.text import Text

from repro import datasets, plots, report, sections, toy

DATASETS = ["waterbirds", "celeba", "civilcomments", "multinli"]
BINARY = tuple(d for d in DATASETS if datasets.get(d).n_classes == 2)  # Figure 3 draws the binary datasets
BALANCES = ["none", "subsetting", "upsampling", "upweighting"]
RATIOS = [0.05, 0.2, 1.0]
GAMMAS = [0.0, 2.0, 8.0]


def _tables(seeds):
    rng = np.random.default_rng(0)
    grid = [(d, s) for d in DATASETS for s in seeds]
    t = {}
    t["curve"] = pd.DataFrame([{"dataset": d, "seed": s, "epoch": e, "nc1_train": rng.random() + 1 / e}
                               for d, s in grid for e in range(1, 6)])
    t["end"] = pd.DataFrame([{"dataset": d, "seed": s, "epochs": 5, "standard_epochs": 2, "nc1_train_first": 1.0,
                              "nc1_train_end": 0.2, "nc1_heldout_end": 2.0} for d, s in grid])
    t["paths"] = pd.DataFrame([{"dataset": d, "seed": s, "step": k,  # celeba: held-out features not separable
                                "direction_error": np.nan if d == "celeba" else 1 / np.log(k + 2),
                                "standard_steps": 100, "separable": d != "celeba"}
                               for d, s in grid if d in BINARY for k in (1, 10, 1000)])
    t["erm4"] = pd.DataFrame([{"dataset": d, "seed": s, "ratio": r, "test_acc_wg": r / 2 + rng.random() / 10}
                              for d, s in grid for r in RATIOS])
    t["llr4"] = pd.DataFrame([{"dataset": d, "seed": s, "erm_ratio": a, "llr_ratio": b,
                               "test_acc_wg": b / 2 + rng.random() / 10} for d, s in grid for a in RATIOS for b in RATIOS])
    t["erm5"] = pd.DataFrame([{"dataset": d, "seed": s, "balance": b, "test_acc_wg": rng.random()}
                              for d, s in grid for b in BALANCES])
    t["llr5"] = pd.DataFrame([{"dataset": d, "seed": s, "erm_balance": b, "llr_balance": c, "test_acc_wg": rng.random()}
                              for d, s in grid for b in BALANCES for c in BALANCES])
    t["afr"] = pd.DataFrame([{"dataset": d, "seed": s, "gamma": g, "test_acc_wg": rng.random()}
                             for d, s in grid for g in GAMMAS])
    t["mass"] = pd.DataFrame([{"dataset": d, "seed": s, "gamma": g, "group": k, "group_name": str(k),
                               "weight_share": 0.25} for d, s in grid for g in [None, *GAMMAS] for k in range(4)])
    t["curves"] = pd.DataFrame([{"dataset": d, "seed": s, "balance": b, "epoch": e, "test_acc_wg": rng.random()}
                                for d, s in grid for b in BALANCES[1:] for e in range(1, 5)])
    t["bars"] = pd.DataFrame([{"dataset": d, "seed": s, "balance": b, "method": m, "test_acc_wg": rng.random()}
                              for d, s in grid for b in BALANCES[1:]
                              for m in ("class-balanced ERM", "group-balanced DFR", sections.DFR_L1)])
    return t


def _draw(name: str, seeds=(1, 2, 3), **kw) -> plots.Plot:
    t = _tables(list(seeds))
    if name == "figure1":
        train, held = toy.make(200, 0.9, 0), toy.make(100, 0.9, 1)
        collapsed = (toy.collapse(train[0], train[1]), train[1], train[2])
        return plots.figure1(train, collapsed, held, toy.class_mean_classifier(collapsed[0], collapsed[1]),
                             toy.svm(held[0], held[1]))
    calls = {"figure2": lambda: plots.figure2(t["curve"], t["end"], **kw),
             "figure3": lambda: plots.figure3(t["paths"], **kw),
             "figure4": lambda: plots.figure4(t["erm4"], t["llr4"], sections.ratio_correlations(t["erm4"], t["llr4"]),
                                              **kw),
             "figure5": lambda: plots.figure5(t["erm5"], t["llr5"], **kw),
             "figure_afr": lambda: plots.figure_afr(t["afr"], t["mass"], sections.minority(DATASETS), **kw),
             "figure6": lambda: plots.figure6(t["curves"], **kw),
             "figure7": lambda: plots.figure7(t["bars"], **kw)}
    return calls[name]()


FIGURES = ["figure1", "figure2", "figure3", "figure4", "figure5", "figure_afr", "figure6", "figure7"]


def test_every_figure_function_is_tested():
    assert {n for n in dir(plots) if n.startswith("figure")} == set(FIGURES)


@pytest.mark.parametrize("name", FIGURES)
def test_figure_fits_the_column(name):
    fig = _draw(name).figure
    fig.canvas.draw()
    assert fig.get_size_inches()[0] * fig.dpi == pytest.approx(plots.COLUMN_PX)
    assert np.asarray(fig.canvas.buffer_rgba()).shape[1] == plots.COLUMN_PX  # the PNG the page shows
    renderer = fig.canvas.get_renderer()
    texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    assert texts
    for text in texts:
        assert text.get_fontsize() >= plots.MIN_POINTS, f"{name}: {text.get_text()!r} at {text.get_fontsize()} pt"
    drawn, canvas = fig.get_tightbbox(renderer), fig.bbox_inches  # everything drawn, and the canvas (inches)
    tol = 1 / fig.dpi
    assert drawn.x0 >= -tol and drawn.y0 >= -tol and drawn.x1 <= canvas.x1 + tol and drawn.y1 <= canvas.y1 + tol, \
        f"{name}: something drawn lies outside the canvas ({drawn} vs {canvas})"
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.has_data()]
    rows = {}
    for ax in panels:
        rows.setdefault(round(ax.get_position().y0, 2), []).append(ax)
    assert max(len(r) for r in rows.values()) <= 2, f"{name}: more than two panels in a row"
    legends = [a for a in fig.findobj(Legend)]
    assert len(legends) == 1, f"{name}: {len(legends)} legends; one per figure"
    box = legends[0].get_window_extent(renderer)
    for ax in panels:
        assert not box.overlaps(ax.get_window_extent(renderer)), f"{name}: the legend covers a panel"


@pytest.mark.parametrize("name", [f for f in FIGURES if f != "figure1"])  # Figure 1: the toy, in every profile
def test_titles_say_twin_on_the_twins(name):
    for twin in (True, False):
        fig = _draw(name, twin=twin).figure
        titles = [ax.get_title() for ax in fig.axes if ax.get_visible() and ax.get_title()]
        assert titles and all(("twin" in t) == twin for t in titles), (twin, titles)
    plot = _draw(name, twin=True)
    for dataset in plot.datasets if name != "figure_afr" else ():  # AFR: one panel for all datasets
        assert any(t.startswith(f"{dataset} (twin)") for t in (ax.get_title() for ax in plot.figure.axes))


def test_twin_figures_fit_the_column():
    for name in FIGURES[1:]:
        fig = _draw(name, twin=True).figure
        fig.canvas.draw()
        drawn, canvas = fig.get_tightbbox(fig.canvas.get_renderer()), fig.bbox_inches
        assert drawn.x0 >= -0.01 and drawn.x1 <= canvas.x1 + 0.01, f"{name}: a longer title leaves the canvas"


def test_methods_keep_their_colour_across_figures():
    def colours(plot):
        legend = plot.figure.findobj(Legend)[0]
        handles = legend.legend_handles
        return {t.get_text(): h.get_facecolor() if hasattr(h, "get_facecolor") and not hasattr(h, "get_xdata")
                else h.get_color() for t, h in zip(legend.get_texts(), handles)}

    from matplotlib.colors import to_hex

    def by_method(plot, method):
        hits = {to_hex(c) for label, c in colours(plot).items() if method in label and "ERM" not in label}
        assert len(hits) == 1, (method, colours(plot))
        return hits.pop()

    for method in ("subsetting", "upsampling", "upweighting"):
        assert by_method(_draw("figure5"), method) == by_method(_draw("figure6"), method) == \
            by_method(_draw("figure7"), method) == plots.BALANCE_COLOURS[method]


def test_figure3_says_so_where_the_features_are_not_separable():
    fig = _draw("figure3").figure
    texts = [t.get_text() for t in fig.findobj(Text)]
    assert sum("not\nlinearly separable" in t for t in texts) == 1  # the celeba panel, and only it
    panels = [ax for ax in fig.axes if ax.has_data()]
    assert len(panels) == len(BINARY) - 1


def test_figure7_shows_kirichenko_dfr_in_one_colour():
    from matplotlib.colors import to_hex
    from matplotlib.patches import Rectangle

    fig = _draw("figure7").figure
    fills = {to_hex(r.get_facecolor()) for ax in fig.axes for r in ax.findobj(Rectangle) if r.get_height() > 0}
    assert plots.DFR_L1_COLOUR in fills
    assert plots.DFR_L1_COLOUR not in plots.BALANCE_COLOURS.values() and plots.DFR_L1_COLOUR != plots.ERM_COLOUR


def test_captions_state_only_what_is_drawn():
    three = _draw("figure3")
    assert three.datasets == BINARY and "multinli" not in BINARY  # MultiNLI has no SVM panel
    text = report.caption("Figure 3", three, "smoke", "")
    assert "multinli" not in text and "Means over 3 seeds (1, 2, 3); bands show ± one standard deviation" in text
    one = report.caption("Figure 4", _draw("figure4", seeds=(2,)), "smoke", "")
    assert "One seed (2)" in one and "standard deviation" not in one
    toy_caption = report.caption("Figure 1", _draw("figure1"), "smoke", "")
    assert "seed" not in toy_caption and "deviation" not in toy_caption and "Datasets" not in toy_caption


def test_figure_with_one_seed_draws_no_spread():
    from matplotlib.collections import PolyCollection

    fig = _draw("figure2", seeds=(1,)).figure
    assert not [c for c in fig.findobj(PolyCollection)], "a band over one seed"
    assert _draw("figure2", seeds=(1,)).spread == "" and _draw("figure2").spread == "bands"


def test_undefined_correlations_say_why():
    points = pd.DataFrame({"dataset": "waterbirds", "group": [0] * 3 + [1] * 3, "group_name": ["a"] * 3 + ["b"] * 3,
                           "margin_min": [0.1, 0.2, 0.3, np.nan, np.nan, 0.5], "margin_avg": [1.0, 2.0, 3.0, 1, 2, 3],
                           "test_acc": [0.5, 0.5, 0.5, 0.1, 0.2, 0.3]})
    table = report.margin_table(sections.margin_correlations(points), points)
    assert list(table["r (min margin)"]) == ["n/a", "n/a"] and table["r (avg margin)"].iloc[1] == "1.000"
    assert "min margin: test accuracy is 0.5 for every head" in table["why n/a"].iloc[0]
    assert table["why n/a"].iloc[1] == ("min margin: min margin undefined for 2 of 3 heads (no held-out point of "
                                        "the group is classified correctly)")
    assert "nan" not in table.to_string().lower()
