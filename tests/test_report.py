"""Book-side tables read as a reader expects: Appendix B's Table 3 in one row order for every profile, values
without Python reprs, LLR's epochs as the code runs them, numbers right-aligned, datasets named as the paper."""
import pandas as pd
import pytest

from repro import datasets, hparams, report


def _rows(table: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()]


@pytest.mark.parametrize("profile", hparams.PROFILES)
def test_table3_shows_values_not_reprs_and_llr_epochs_as_run(profile):
    rows = _rows(report.hparams_markdown(hparams.table(profile)))
    head, body = rows[0], rows[2:]
    assert head[1:] == ["Waterbirds", "CelebA", "CivilComments", "MultiNLI"]
    cells = [c for r in body for c in r[1:]]
    assert not any(ch in c for c in cells for ch in "[]'") and not {"{}", "True", "False", "1e-05"} & set(cells)
    llr = next(r for r in body if r[0] == "LLR epochs")
    assert llr[1:] == [str(hparams.head(d, profile)["epochs"]) for d in ("waterbirds", "celeba", "civilcomments",
                                                                         "multinli")]
    line = report.llr_line(hparams.table(profile))
    follows = all(hparams.head(d, profile)["epochs"] == hparams.erm(d, profile)["epochs"] for d in datasets.names())
    assert ("as many epochs as ERM" in line) == follows and ("deviations.md" in line) == (not follows)
    assert "$10^{-2}$" in line


def test_table3_rows_in_one_order_for_every_profile():
    every = [*report.HPARAM_ROWS.values(), "LLR epochs"]
    for profile in hparams.PROFILES:
        order = [r[0] for r in _rows(report.hparams_markdown(hparams.table(profile)))[2:]]
        assert order == [k for k in every if k in order], (profile, order)


def test_values_as_a_reader_expects():
    assert [report.value_text(v) for v in (1e-5, 5e-5, 0.01, 0.5, 0.0, True, {}, {"pool": "pooler"}, [8, 16], 20)] \
        == ["$10^{-5}$", "$5 \\times 10^{-5}$", "$10^{-2}$", "0.5", "0", "yes", "-", "pool: pooler", "8, 16", "20"]


def test_numbers_are_right_aligned_even_when_flagged():
    table = pd.DataFrame({"group": ["a / b", "c / d"], "p(y)": ["0.25", "0.75"], "train": ["1057 ⚠", "12"],
                          "note": ["n/a", "text"]})
    rule = _rows(report.aligned_markdown(table))[1]
    assert [c.startswith(":") for c in rule] == [True, False, False, True]  # left, right, right, left
    assert [c.endswith(":") for c in rule] == [False, True, True, False]


def test_a_table_of_several_rows_per_dataset_is_one_table_per_dataset():
    table = pd.DataFrame({"dataset": ["CelebA", "CelebA", "MultiNLI"], "group": ["a", "b", "c"],
                          "r": ["0.5", "n/a", "0.25"], "why n/a": ["", "constant", ""]})
    text = report.markdown(table)
    assert text.startswith("**CelebA**") and "**MultiNLI**" in text and "| dataset" not in text
    multinli = text[text.index("**MultiNLI**"):]
    assert "why n/a" not in multinli and "why n/a" in text[:text.index("**MultiNLI**")]
    assert report.markdown(table.drop_duplicates("dataset")).startswith("| dataset")
