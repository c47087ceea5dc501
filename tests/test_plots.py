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


def _tables(seeds, trivial=True):
    """Hand-made tidy tables; with `trivial`, some CivilComments runs and heads predict one class (one_class)."""
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
    if trivial:
        cc = {name: frame["dataset"] == "civilcomments" for name, frame in t.items()}
        marks = {"paths": t["paths"]["step"] == 1, "erm4": t["erm4"]["ratio"] == 0.05,
                 "llr4": t["llr4"]["llr_ratio"] == 0.05, "llr5": t["llr5"]["llr_balance"] == "none",
                 "afr": t["afr"]["gamma"] >= 2, "curves": t["curves"]["epoch"] == 4,
                 "bars": (t["bars"]["method"] == sections.DFR_L1) & (t["bars"]["balance"] == "subsetting")}
        for name, rows in marks.items():
            t[name]["one_class"] = cc[name] & rows
            if "test_acc_wg" in t[name]:
                t[name].loc[t[name]["one_class"], "test_acc_wg"] = 0.0  # a binary head of one class: WGA 0
    return t


def _draw(name: str, seeds=(1, 2, 3), trivial=True, **kw) -> plots.Plot:
    t = _tables(list(seeds), trivial)
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
        titles = [ax.get_title() for ax in plot.figure.axes]
        assert any(t.startswith(f"{datasets.display(dataset)} (twin)") for t in titles)


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


@pytest.mark.parametrize("name", ["figure3", "figure4", "figure5", "figure_afr", "figure6", "figure7"])
def test_one_class_runs_are_marked_not_drawn_as_missing_bars(name):
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    plot = _draw(name)
    fig = plot.figure
    marks = [m for m in fig.findobj(Line2D) if m.get_gid() == plots.ONE_CLASS]
    assert marks and all(m.get_marker() == "x" for m in marks)
    legend = fig.findobj(Legend)[0]
    assert any("predicts one class" in t.get_text() for t in legend.get_texts())
    assert "predicts one class for every test example" in plot.shows
    hatched = [r for r in fig.findobj(Rectangle) if r.get_gid() == plots.ONE_CLASS]
    if name in ("figure5", "figure7"):  # bars: hatched, the × at height 0 where the WGA is 0
        assert hatched and all(r.get_hatch() == "///" for r in hatched)
        assert any(m.get_ydata()[0] == 0.0 for m in marks)
        ax = next(ax for ax in fig.axes if ax.get_title() == "CivilComments")
        assert all(r.axes is ax for r in hatched)  # only the CivilComments bars
    clean = _draw(name, trivial=False)
    assert not [m for m in clean.figure.findobj(Line2D) if m.get_gid() == plots.ONE_CLASS]
    assert "one class" not in clean.shows


def test_one_class_note_counts_and_compares():
    t = _tables([1, 2, 3])
    note = report.one_class_note({"ERM": (t["erm5"], ["balance"]), "LLR": (t["llr5"], ["erm_balance", "llr_balance"])})
    assert note.startswith("**12 of 240 runs or heads predict one class")  # 4 ERM balancings x 3 seeds: 4 x 3
    assert "On CivilComments, LLR (erm_balance none, llr_balance none): 3 of 3; " in note
    assert "the same methods on the other datasets: 0 of 36; the other methods on CivilComments: 0 of 48" in note
    rows = [" ".join(line.split()) for line in note.splitlines() if line.startswith("| LLR")]
    assert "neither alone" in note and len(rows) == 4  # only the variants with a one-class head
    assert rows[0] == "| LLR (erm_balance none, llr_balance none) | 0 of 3 | 0 of 3 | 3 of 3 | 0 of 3 |"
    shares = pd.DataFrame({"dataset": ["civilcomments"] * 4, "seed": [1, 1, 2, 2], "class": [0, 1, 0, 1],
                           "share": [0.9, 0.1, 0.8, 0.2]})
    assert "CivilComments 0.85." in report.one_class_note({"LLR": (t["llr5"], ["llr_balance"])}, shares)
    clean = _tables([1], trivial=False)
    assert report.one_class_note({"AFR": (clean["afr"], ["gamma"])}) == \
        "No run or head of this page predicts one class for every test example (12 checked)."


def test_tables_count_one_class_heads():
    points = pd.DataFrame({"dataset": "civilcomments", "group": [0, 1] * 3, "group_name": ["a", "b"] * 3,
                           "margin_min": [0.1, 0.2, 0.3, 0.1, 0.2, 0.4], "margin_avg": [1.0, 2.0, 3.0, 1, 2, 3],
                           "test_acc": [0.5, 0.6, 1.0, 0.0, 0.7, 0.2], "one_class": [False, False, True, True, False, False]})
    table = report.margin_table(sections.margin_correlations(points), points)
    assert table["one-class heads"].tolist() == [1, 1]
    assert "one-class heads" not in report.margin_table(sections.margin_correlations(points),
                                                        points.assign(one_class=False))
    t = _tables([1, 2])
    ratio = report.ratio_table(sections.ratio_correlations(t["erm4"], t["llr4"]), t["erm4"], t["llr4"])
    cc = ratio[ratio["dataset"] == "CivilComments"].iloc[0]
    assert cc["one-class ERM runs"] == 2 and cc["one-class LLR heads"] == 6


def test_dfr_tuning_note_counts_the_heads_with_a_group_missing():
    bars = pd.DataFrame({"dataset": ["civilcomments", "civilcomments", "celeba", "celeba"],
                         "method": [sections.DFR_L1] * 3 + ["class-balanced ERM"],
                         "dfr_tuning_groups_missing": [[2], [], [], None],
                         "dfr_group_counts": [[5, 6, 1, 7], [5, 6, 5, 7], [9, 9, 9, 9], None]})
    note = report.dfr_tuning_note(bars)
    assert note.startswith("Kirichenko et al.'s DFR tunes C on halves of the held-out set stratified by group: 1 of 3 heads")
    assert note.endswith(": CivilComments, 1 head (groups [2]), their final fits balanced to 1 example(s) per group.")
    bars.at[0, "dfr_group_counts"] = [5, 6, 0, 7]
    assert report.dfr_tuning_note(bars).endswith("balanced to 5 example(s) per group, leaving out group(s) [2] that "
                                                 "have no held-out example in some seed.")
    assert "0 of 1 heads" in report.dfr_tuning_note(bars.iloc[[1]])


def test_panels_span_their_own_runs_in_figures_2_and_6():
    """Runs of different lengths: each panel's x-axis spans its own epochs (Figures 2 and 6 alike)."""
    lengths = {"waterbirds": 10, "celeba": 6, "civilcomments": 4, "multinli": 2}
    curve = pd.DataFrame([{"dataset": d, "seed": s, "epoch": e, "nc1_train": 1 / e, "balance": b, "test_acc_wg": 0.5}
                          for d, n in lengths.items() for s in (1, 2) for e in range(1, n + 1)
                          for b in ("upsampling", "upweighting")])
    end = pd.DataFrame([{"dataset": d, "seed": 1, "epochs": n, "standard_epochs": 1, "nc1_train_first": 1.0,
                         "nc1_train_end": 1 / n, "nc1_heldout_end": 1.0} for d, n in lengths.items()])
    for plot in (plots.figure2(curve, end), plots.figure6(curve)):
        for dataset, ax in zip(plot.datasets, plot.figure.axes):
            lo, hi = ax.get_xlim()
            assert lo > 0 and lengths[dataset] <= hi < lengths[dataset] + 1, (dataset, lo, hi)
            assert max(ax.get_xticks()) == lengths[dataset]


def test_log_axes_label_enough_ticks_to_read_values():
    """Every log axis labels at least MIN_LOG_LABELS ticks in view, as plain numbers, even within one decade."""
    assert plots.log_ticks(0.33, 0.65) == [0.35, 0.4, 0.45, 0.5, 0.6]
    assert plots.log_ticks(0.001, 20) == [0.001, 0.01, 0.1, 1.0, 10.0]
    fig = _draw("figure2").figure
    fig.canvas.draw()
    for ax in [a for a in fig.axes if a.get_visible()]:
        lo, hi = ax.get_ylim()
        labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text() and lo <= float(t.get_text()) <= hi]
        assert len(labels) >= plots.MIN_LOG_LABELS and all("^" not in x and "e" not in x for x in labels), labels


def test_datasets_and_symbols_as_the_paper_writes_them():
    """Titles, legends and captions name datasets as the paper does (CelebA, not celeba); AFR's axis says γ."""
    for name in FIGURES[1:]:
        plot = _draw(name)
        texts = [t.get_text() for t in plot.figure.findobj(Text) if t.get_visible()]
        assert not any(d in t for t in texts for d in DATASETS), (name, texts)
        assert not any(d in report.caption("F", plot, "smoke", "") for d in DATASETS)
    afr = _draw("figure_afr")
    assert {ax.get_xlabel() for ax in afr.figure.axes if ax.get_visible()} == {"γ"} and "gamma" not in afr.shows


@pytest.mark.parametrize("name", FIGURES)
def test_one_column_drawing_fits_a_phone(name):
    """The narrow-screen drawing (repro.plots.one_column): NARROW_PX wide at twice the dpi, one panel per row in
    the order of the wide figure, fonts still at least MIN_POINTS, nothing outside the canvas, the legend off
    the panels."""
    fig = _draw(name).figure
    order = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    fig = plots.one_column(fig)
    fig.canvas.draw()
    assert fig.get_size_inches()[0] * fig.dpi == pytest.approx(2 * plots.NARROW_PX)
    assert np.asarray(fig.canvas.buffer_rgba()).shape[1] == 2 * plots.NARROW_PX
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in shown] == order
    assert len({round(ax.get_position().x0, 2) for ax in shown}) == 1, "one panel per row"
    renderer = fig.canvas.get_renderer()
    for text in [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]:
        assert text.get_fontsize() >= plots.MIN_POINTS
    drawn, canvas = fig.get_tightbbox(renderer), fig.bbox_inches
    tol = 1 / fig.dpi
    assert drawn.x0 >= -tol and drawn.y0 >= -tol and drawn.x1 <= canvas.x1 + tol and drawn.y1 <= canvas.y1 + tol, \
        f"{name}: something drawn lies outside the canvas ({drawn} vs {canvas})"
    legends = fig.findobj(Legend)
    assert len(legends) == 1
    for ax in [ax for ax in shown if ax.has_data()]:
        assert not legends[0].get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))
