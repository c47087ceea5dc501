"""The page helper: the line that says what a page's data are, and where it lands on the page."""
import pytest

from repro import hparams, page


@pytest.mark.parametrize("profile", hparams.TWIN_PROFILES)
def test_twin_profiles_say_what_the_numbers_are(profile):
    line = page.data_line(profile)
    assert f"synthetic twins of the `{profile}` profile" in line
    assert "not the paper's data" in line and "(deviations.md)" in line
    assert "\n" not in line  # one line
    toy = page.data_line(profile, toy=True)
    assert "toy problem" in toy and f"`{profile}` build run on synthetic twins" in toy and "(deviations.md)" in toy


def test_the_paper_profile_has_no_twin_line():
    assert [p for p in hparams.PROFILES if p not in hparams.TWIN_PROFILES] == ["paper"]
    assert page.data_line("paper") == "" and page.data_line("paper", toy=True) == ""


@pytest.mark.parametrize("profile", hparams.PROFILES)
def test_begin_shows_the_line_first(profile, monkeypatch):
    shown = []
    monkeypatch.setattr(page, "_show", lambda *objs: shown.extend(o.data for o in objs))
    setup = page.begin(profile, "")
    assert setup.twin == (profile in hparams.TWIN_PROFILES)
    if setup.twin:
        assert shown[0] == page.data_line(profile)
    else:
        assert not shown  # the paper's data: nothing to say (a rehearsal shows its own banner)


def test_a_parameter_value_is_written_as_the_pages_write_it():
    assert [page.shown(v) for v in (10.0, 2.5, 20, [0.05, 0.1, 1.0], [1, 2, 3], True, False, "", "data/synth/cpu",
                                    ["waterbirds", "celeba"], {})] == \
        ["10", "2.5", "20", "{0.05, 0.1, 1}", "{1, 2, 3}", "true", "false", "''", "data/synth/cpu",
         "[waterbirds, celeba]", "{}"]


def test_prose_shows_every_parameter_it_names_with_its_value(monkeypatch):
    shown = []
    monkeypatch.setattr(page, "_show", lambda *objs: shown.extend(o.data for o in objs))
    setup = page.Setup("smoke", (), None, values={"svm_factor": 10.0, "ratios": [0.2, 1.0], "match_steps": True})
    page.prose(setup, "for `svm_factor` times, at `ratios` (`match_steps`); `repro.toy`, {download}`ratios`, "
                      "`heads`, `ratios` = {0.2, 1} once")
    assert shown == ["for `svm_factor` = 10 times, at `ratios` = {0.2, 1} (`match_steps` = true); `repro.toy`, "
                     "{download}`ratios`, `heads`, `ratios` = {0.2, 1} once"]


def test_the_values_of_a_page_are_its_templates_parameters_as_the_kernel_holds_them(tmp_path):
    from tests.conftest import REPO

    namespace = {"profile": "smoke", "params_yaml": "", "svm_factor": 3.0, "seeds": [1], "sgd": {}, "page": page}
    assert page.parameters(REPO / "book" / "margins.ipynb", namespace) == {"seeds": [1], "svm_factor": 3.0}
    assert page.parameters(tmp_path / "margins.ipynb", namespace) == {}  # a copy outside a checkout
