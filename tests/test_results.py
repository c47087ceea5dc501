"""repro.results: heads joined to their ERM run, filters on the ERM run's keys, the store found from any folder,
a warning on an empty store, and the examples of book/using_results.md run against a smoke store."""
import os
import re
import subprocess
import sys
import warnings

import pandas as pd
import pytest

from tests.conftest import REPO, SRC
from repro import files, results, runs, sections, synth

PAGE = REPO / "book" / "using_results.md"


def test_join_erm_adds_the_erm_runs_keys_and_nan_for_a_missing_run():
    erm = pd.DataFrame([{"run_id": "a", "dataset": "waterbirds", "seed": 1, "balance": "none", "lr": 0.1},
                        {"run_id": "b", "dataset": "celeba", "seed": 2, "balance": "upweighting", "lr": 0.1}])
    heads = pd.DataFrame([{"erm": "b", "test_acc_wg": 0.5}, {"erm": "a", "test_acc_wg": 0.7},
                          {"erm": "gone", "test_acc_wg": 0.1}])
    out = results.join_erm(heads, erm)
    assert out["erm_dataset"].tolist()[:2] == ["celeba", "waterbirds"] and out["erm_seed"].tolist()[:2] == [2, 1]
    assert out["erm_balance"].tolist()[:2] == ["upweighting", "none"] and "erm_lr" not in out
    assert out.iloc[2][["erm_dataset", "erm_seed", "erm_group_ratio"]].isna().all()  # no such run, no such key
    assert out["test_acc_wg"].tolist() == [0.5, 0.7, 0.1]


def test_default_store_is_the_repositorys_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("REPRO_RUNS", raising=False)
    tree = tmp_path / "checkout"
    for folder in ("book/sub", "params"):
        (tree / folder).mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml"):
        (tree / name).write_text("")
    monkeypatch.chdir(tree / "book" / "sub")
    assert runs.default_root() == tree.resolve() / "runs"  # the nearest checkout above the current folder
    monkeypatch.chdir(tmp_path)
    assert runs.default_root() == REPO / "runs"  # outside any checkout: the one the package is imported from
    monkeypatch.setattr(files, "package_tree", lambda: None)
    with pytest.raises(runs.StoreError, match="set REPRO_RUNS"):  # never ./runs by accident
        runs.default_root()
    monkeypatch.setenv("REPRO_RUNS", str(tmp_path / "elsewhere"))
    assert runs.default_root() == tmp_path / "elsewhere"


def test_a_process_outside_the_repository_reads_the_repositorys_store(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "REPRO_RUNS"} | {"PYTHONPATH": SRC}
    out = subprocess.run([sys.executable, "-c", "from repro import runs; print(runs.default_root())"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert out == str(REPO / "runs")


def test_an_empty_or_missing_store_warns_and_names_it(tmp_path):
    for store in (tmp_path / "missing", tmp_path):
        with pytest.warns(UserWarning, match=f"run store {store} holds no finished run"):
            assert results.load("heads", store, dataset="waterbirds").empty


def test_a_store_without_the_kind_asked_for_warns_and_names_the_kinds_it_holds(tmp_path):
    (tmp_path / "erm" / "0123456789abcdef").mkdir(parents=True)
    (tmp_path / "erm" / "0123456789abcdef" / "done").write_text("")
    with pytest.warns(UserWarning, match=f"run store {tmp_path} holds no finished heads run \\(only erm\\)"):
        assert results.load("heads", tmp_path, dataset="waterbirds").empty


@pytest.fixture(scope="module")
def smoke_store(tmp_path_factory):
    """A store with one smoke ERM run of the Waterbirds twin, two LLR heads and one SVM path (Section 2.2)."""
    tmp = tmp_path_factory.mktemp("results")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REPRO_RUNS", str(tmp / "runs"))
        mp.setenv("REPRO_PROGRESS", "0")
        synth.ensure(tmp / "data", ["waterbirds"], scale="smoke")
        sections.margins(["waterbirds"], [1], "smoke", str(tmp / "data"), llr_seeds=(1, 2), svm_points=2)
    return tmp / "runs"


@pytest.mark.slow
def test_heads_filter_on_their_erm_run(smoke_store):
    heads = results.load("heads", smoke_store, dataset="waterbirds")
    erm = runs.load("erm", smoke_store).iloc[0]
    assert len(heads) == 2 and sorted(heads["spec.seed"]) == [1, 2] and (heads["erm"] == erm["run_id"]).all()
    for key in results.ERM_KEYS:
        assert heads[f"erm_{key}"].tolist() == [erm[key]] * 2 or pd.isna(erm[key]) and heads[f"erm_{key}"].isna().all()
    assert results.load("heads", smoke_store, dataset="celeba").empty
    assert len(results.load("heads", smoke_store, seed=1, **{"spec.seed": 2})) == 1
    assert results.load("svm", smoke_store, dataset="waterbirds")["erm_model"].tolist() == [erm["model"]]
    with pytest.raises(ValueError, match="unknown filter 'nope' for kind 'heads'; columns: run_id, "):
        results.load("heads", smoke_store, nope=1)
    with pytest.raises(ValueError, match="repro.results.load adds its ERM run's dataset"):
        runs.load("heads", smoke_store, dataset="waterbirds")


@pytest.mark.slow
def test_the_pages_examples_run(smoke_store, monkeypatch):
    """Every ```python block of book/using_results.md, in order, in one namespace, against the smoke store."""
    blocks = re.findall(r"^```python\n(.*?)^```$", PAGE.read_text(), flags=re.S | re.M)
    assert len(blocks) >= 3
    monkeypatch.setenv("REPRO_RUNS", str(smoke_store))
    namespace = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the smoke store is not empty: no warning
        for block in blocks:
            exec(compile(block, str(PAGE), "exec"), namespace)
    assert namespace["runs"].default_root() == smoke_store
    assert len(namespace["heads"]) == 2 and set(namespace["heads"]["erm_dataset"]) == {"waterbirds"}
    assert namespace["summary"]["count"].tolist() == [2] and len(namespace["erm"]) == 1


def test_the_page_is_in_the_toc():
    from repro import book

    assert "book/using_results" in book.toc_entries(REPO)
