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
