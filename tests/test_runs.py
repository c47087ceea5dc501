import json
import os
import subprocess
import sys

import pytest

from repro import runs


@pytest.fixture(autouse=True)
def toy_kind(monkeypatch):
    monkeypatch.setitem(runs.CODE_VERSIONS, "toy", 1)


def square(config, workdir):
    (workdir / "artifact.txt").write_text(str(config["x"]))
    return {"value": config["x"] ** 2, "curve": [1, 2, 3], "sub": {"a": 1}}


def test_run_id_is_canonical_and_versioned(monkeypatch):
    a = runs.run_id("toy", {"x": 1, "opt": {"lr": 0.1, "b": 2}})
    assert a == runs.run_id("toy", {"opt": {"b": 2, "lr": 0.1}, "x": 1})  # key order does not matter
    assert len(a) == 16 and int(a, 16) >= 0
    assert a != runs.run_id("toy", {"x": 2, "opt": {"lr": 0.1, "b": 2}})
    monkeypatch.setitem(runs.CODE_VERSIONS, "toy", 2)
    assert a != runs.run_id("toy", {"x": 1, "opt": {"lr": 0.1, "b": 2}})  # bumping the code version


def test_unknown_kind_and_unjsonable_config():
    with pytest.raises(ValueError, match="registered kinds"):
        runs.run_id("nope", {})
    with pytest.raises(ValueError, match="not JSON-able"):
        runs.run_id("toy", {"x": object()})


def test_get_computes_once_and_load(tmp_path):
    calls = []

    def compute(config, workdir):
        calls.append(config["x"])
        return square(config, workdir)

    store = runs.Store(tmp_path)
    p1 = runs.get("toy", {"x": 3}, compute, store)
    p2 = runs.get("toy", {"x": 3}, compute, store)
    runs.get("toy", {"x": 4}, compute, store)
    assert p1 == p2 == tmp_path / "toy" / runs.run_id("toy", {"x": 3}) and calls == [3, 4]
    assert (p1 / "done").exists() and (p1 / "artifact.txt").read_text() == "3"
    assert json.loads((p1 / "config.json").read_text()) == {"x": 3}
    assert runs.read_metrics("toy", p1.name, store)["value"] == 9
    df = runs.load("toy", store)
    assert sorted(df["value"]) == [9, 16] and df.loc[0, "curve"] == [1, 2, 3]
    assert df.loc[0, "sub"] == {"a": 1}  # dict metrics stay objects
    assert list(runs.load("toy", store, x=4)["value"]) == [16]
    assert sorted(runs.load("toy", store, x=(3, 4))["value"]) == [9, 16]
    assert list(runs.load("toy", store, x=lambda v: v > 3)["value"]) == [16]
    with pytest.raises(ValueError, match="unknown filter"):
        runs.load("toy", store, nope=1)
    assert list(runs.load("toy", runs.Store(tmp_path / "empty")).columns) == ["run_id", "path", "wall_s"]


def test_failed_compute_leaves_nothing(tmp_path):
    def boom(config, workdir):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        runs.get("toy", {"x": 1}, boom, tmp_path)
    assert list((tmp_path / "toy").iterdir()) == []
    with pytest.raises(FileNotFoundError, match="not finished"):
        runs.read_metrics("toy", runs.run_id("toy", {"x": 1}), tmp_path)


def test_interrupted_runs_are_detected_and_redone(tmp_path):
    rid = runs.run_id("toy", {"x": 5})
    kind_dir = tmp_path / "toy"
    (kind_dir / rid).mkdir(parents=True)  # a run directory without `done`
    (kind_dir / rid / "metrics.json").write_text("{}")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = kind_dir / f".tmp-{rid}-{dead.stdout.strip()}-abcd"  # temp dir of a dead process on this host
    stale.mkdir()
    runs.write_json(stale / ".owner", {"host": __import__("socket").gethostname(), "pid": int(dead.stdout)})
    path = runs.get("toy", {"x": 5}, square, tmp_path)
    assert runs.read_metrics("toy", rid, tmp_path)["value"] == 25 and not stale.exists()
    assert sorted(p.name for p in kind_dir.iterdir()) == [rid]
    assert len(runs.load("toy", tmp_path)) == 1 and path.name == rid


def test_finished_copy_appearing_meanwhile_wins(tmp_path):
    def racing(config, workdir):  # another process finishes the same run while we compute
        other = {"value": -1}
        runs.get("toy", config, lambda c, w: other, tmp_path)
        return {"value": 1}

    path = runs.get("toy", {"x": 7}, racing, tmp_path)
    assert runs.read_metrics("toy", path.name, tmp_path) == {"value": -1}
    assert [p.name for p in (tmp_path / "toy").iterdir()] == [path.name]


def test_default_root(tmp_path, monkeypatch):
    monkeypatch.delenv("REPRO_RUNS", raising=False)
    (tmp_path / "repo" / "a" / "b").mkdir(parents=True)
    (tmp_path / "repo" / "pyproject.toml").write_text("")
    monkeypatch.chdir(tmp_path / "repo" / "a" / "b")
    assert runs.default_root() == (tmp_path / "repo" / "runs").resolve()
    monkeypatch.setenv("REPRO_RUNS", str(tmp_path / "elsewhere"))
    assert runs.Store().root == tmp_path / "elsewhere"


def test_write_json_is_atomic(tmp_path):
    runs.write_json(tmp_path / "m.json", {"a": 1})
    runs.write_json(tmp_path / "m.json", {"a": 2})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": 2}
    assert os.listdir(tmp_path) == ["m.json"]
