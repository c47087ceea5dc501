from repro import plan
from tests.test_book import REPO


def test_paper_dry_run_plans_without_computing(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_RUNS", str(tmp_path / "runs"))
    text = plan.book_plan("paper", root=REPO)
    assert "Plan of the 'paper' profile" in text and "GPU-hours" in text
    assert "erm:" in text and "heads:" in text and "0 cached" in text
    assert "repro data download" in text or "Missing: nothing" in text
    assert not (tmp_path / "runs").exists()  # nothing was computed
