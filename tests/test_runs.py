import json
import os
import subprocess
import sys

import pytest

from repro import runs


@pytest.fixture(autouse=True)
def toy_kind(monkeypatch):
    monkeypatch.setitem(runs.KINDS, "toy", runs.Kind(square, 1))


def square(config, workdir):
    (workdir / "artifact.txt").write_text(str(config["x"]))
    return {"value": config["x"] ** 2, "curve": [1, 2, 3], "sub": {"a": 1}}


def test_run_id_is_canonical_and_versioned(monkeypatch):
    a = runs.run_id("toy", {"x": 1, "opt": {"lr": 0.1, "b": 2}})
    assert a == runs.run_id("toy", {"opt": {"b": 2, "lr": 0.1}, "x": 1})  # key order does not matter
    assert len(a) == 16 and int(a, 16) >= 0
    assert a != runs.run_id("toy", {"x": 2, "opt": {"lr": 0.1, "b": 2}})
    monkeypatch.setitem(runs.KINDS, "toy", runs.Kind(square, 2))
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


def test_a_nested_get_of_the_same_run_is_an_error_not_a_deadlock(tmp_path):
    def nested(config, workdir):
        return {"value": runs.read_metrics("toy", runs.get("toy", config, square, tmp_path).name, tmp_path)}

    with pytest.raises(RuntimeError, match="already claimed by this process"):
        runs.get("toy", {"x": 7}, nested, tmp_path)
    assert list((tmp_path / "toy").iterdir()) == []  # no temp dir, no lock file left


def test_write_json_is_atomic(tmp_path):
    runs.write_json(tmp_path / "m.json", {"a": 1})
    runs.write_json(tmp_path / "m.json", {"a": 2})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": 2}
    assert os.listdir(tmp_path) == ["m.json"]


# ---------------------------------------------------------------------- verified runs

def counting(calls):
    def compute(config, workdir):
        calls.append(config["x"])
        return square(config, workdir)
    return compute


def test_manifest_lists_every_artifact_and_meta_records_where_it_ran(tmp_path):
    path = runs.get("toy", {"x": 2}, square, tmp_path)
    files = json.loads((path / "manifest.json").read_text())["files"]
    assert sorted(files) == ["artifact.txt", "config.json", "meta.json", "metrics.json"]
    assert files["artifact.txt"]["bytes"] == 1 and len(files["artifact.txt"]["sha256"]) == 64
    meta = json.loads((path / "meta.json").read_text())
    assert {"device", "device_name", "torch", "threads"} <= set(meta["device"]) and meta["pid"] == os.getpid()


@pytest.mark.parametrize("damage", ["truncate metrics", "delete metrics", "delete artifact", "delete manifest entry"])
def test_a_damaged_finished_run_is_redone_saying_why(tmp_path, capsys, damage):
    calls = []
    path = runs.get("toy", {"x": 3}, counting(calls), tmp_path)
    if damage == "truncate metrics":
        (path / "metrics.json").write_text((path / "metrics.json").read_text()[:10])
    elif damage == "delete metrics":
        (path / "metrics.json").unlink()
    elif damage == "delete artifact":
        (path / "artifact.txt").unlink()
    else:
        manifest = json.loads((path / "manifest.json").read_text())
        del manifest["files"]["metrics.json"]
        runs.write_json(path / "manifest.json", manifest)
    assert runs.check_run(path) is not None
    assert len(runs.load("toy", tmp_path)) == 0 and "skipping run toy/" in capsys.readouterr().err
    runs.get("toy", {"x": 3}, counting(calls), tmp_path)
    assert calls == [3, 3] and "computing it again" in capsys.readouterr().err
    assert runs.check_run(path, deep=True) is None and runs.read_metrics("toy", path.name, tmp_path)["value"] == 9


def test_a_hand_edited_config_is_refused_by_load_and_redone_by_get(tmp_path, capsys):
    calls = []
    path = runs.get("toy", {"x": 4}, counting(calls), tmp_path)
    (path / "config.json").write_text('{"x": 5}')
    assert "not to its run id" in runs.check_run(path)
    assert runs.load("toy", tmp_path).empty and "hashes to" in capsys.readouterr().err
    runs.get("toy", {"x": 4}, counting(calls), tmp_path)
    assert calls == [4, 4] and list(runs.load("toy", tmp_path)["x"]) == [4]


def test_a_run_of_an_older_code_version_still_checks_out(tmp_path, monkeypatch):
    path = runs.get("toy", {"x": 1}, square, tmp_path)
    monkeypatch.setitem(runs.KINDS, "toy", runs.Kind(square, 2))  # its id hashes with the version in its meta.json
    assert runs.check_run(path) is None and len(runs.load("toy", tmp_path)) == 1


def test_a_run_without_a_manifest_is_not_served_and_verify_reports_it(tmp_path, capsys):
    calls = []
    path = runs.get("toy", {"x": 2}, counting(calls), tmp_path)
    (path / "manifest.json").unlink()
    assert "no manifest.json" in runs.check_run(path) and not runs.is_done(path)
    assert runs.verify_store(tmp_path) == (1, [f"FAIL toy/{path.name}: {runs.check_run(path)}"])
    assert runs.load("toy", tmp_path).empty and "no manifest.json" in capsys.readouterr().err
    runs.get("toy", {"x": 2}, counting(calls), tmp_path)
    assert calls == [2, 2] and runs.verify_store(tmp_path) == (1, [])


def test_small_files_are_checked_by_sha256_at_every_lookup(tmp_path, capsys):
    calls = []
    path = runs.get("toy", {"x": 3}, counting(calls), tmp_path)
    text = (path / "metrics.json").read_text()
    (path / "metrics.json").write_text(text.replace('"value": 9', '"value": 8'))  # valid JSON, same size
    assert "metrics.json does not match its sha256" in runs.check_run(path)
    assert runs.load("toy", tmp_path).empty
    with pytest.raises(ValueError, match="sha256"):
        runs.read_metrics("toy", path.name, tmp_path)
    runs.get("toy", {"x": 3}, counting(calls), tmp_path)
    assert calls == [3, 3] and list(runs.load("toy", tmp_path)["value"]) == [9]


def test_an_artifact_is_hashed_once_per_process_and_a_damaged_one_is_redone_when_read(tmp_path, monkeypatch, capsys):
    calls, hashed = [], []
    monkeypatch.setitem(runs.KINDS, "toy", runs.Kind(counting(calls), 1, lambda metrics: ["artifact.txt"]))
    sha256 = runs.sha256
    monkeypatch.setattr(runs, "sha256", lambda path: hashed.append(path.name) or sha256(path))
    path = runs.get("toy", {"x": 5}, store=tmp_path)
    runs.forget_verified()
    hashed.clear()
    assert runs.artifact(path / "artifact.txt") == path / "artifact.txt"
    assert runs.artifact(path / "artifact.txt") == path / "artifact.txt" and hashed == ["artifact.txt"]
    (path / "artifact.txt").write_text("6")  # same size, other bytes: a new mtime, so it is hashed again
    assert runs.check_run(path) is None  # a lookup checks the sizes of large files, not their bytes
    assert runs.artifact(path / "artifact.txt").read_text() == "5" and calls == [5, 5]
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"run toy/{path.name}: artifact.txt does not match its sha256 in the manifest (corrupt or "
                   "edited); computing it again"]
    (path / "config.json").write_text((path / "config.json").read_text().replace("5", "7"))
    with pytest.raises(ValueError, match="hashes to .* runs verify --fix"):
        runs.artifact(path / "artifact.txt")  # its config cannot say which run to compute


def test_verify_store_finds_corruption_by_sha256_and_fix_removes_it(tmp_path):
    good = runs.get("toy", {"x": 1}, square, tmp_path)
    bad = runs.get("toy", {"x": 2}, square, tmp_path)
    (bad / "artifact.txt").write_text("9")  # same size, other bytes: only the sha256 tells
    abandoned = tmp_path / "toy" / f".tmp-{runs.run_id('toy', {'x': 3})}-999999-abcd"
    abandoned.mkdir()  # killed before it could write its owner file
    checked, lines = runs.verify_store(tmp_path)
    assert checked == 2 and len(lines) == 2 and all(line.startswith("FAIL") for line in lines)
    assert any(bad.name in line and "sha256" in line for line in lines)
    checked, lines = runs.verify_store(tmp_path, fix=True)
    assert all(line.startswith("removed") for line in lines) and not bad.exists() and not abandoned.exists()
    assert runs.verify_store(tmp_path) == (1, []) and good.exists()


def test_temp_folder_killed_before_its_owner_file_is_cleaned_by_the_next_claim(tmp_path):
    rid = runs.run_id("toy", {"x": 6})
    orphan = tmp_path / "toy" / f".tmp-{rid}-{os.getpid()}-0000"  # even a live pid: only a claim holder writes
    orphan.mkdir(parents=True)
    runs.get("toy", {"x": 6}, square, tmp_path)
    assert sorted(p.name for p in (tmp_path / "toy").iterdir()) == [rid]


def test_nan_is_written_as_null_and_read_back_as_nan(tmp_path):
    path = runs.get("toy", {"x": 1}, lambda c, w: {"a": float("nan"), "b": [1.0, float("inf")], "c": 2.0}, tmp_path)
    text = (path / "metrics.json").read_text()
    json.loads(text, parse_constant=lambda name: pytest.fail(f"non-strict JSON constant {name}"))
    assert "NaN" not in text and "Infinity" not in text
    m = runs.read_metrics("toy", path.name, tmp_path)
    assert m["a"] != m["a"] and m["b"][1] != m["b"][1] and m["c"] == 2.0
    row = runs.load("toy", tmp_path).iloc[0]
    assert row["a"] != row["a"]


# ---------------------------------------------------------------------- a store that cannot hold a run

def test_a_file_where_a_run_folder_should_be_fails_before_computing(tmp_path):
    calls = []
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / runs.run_id("toy", {"x": 1})).write_text("in the way")
    with pytest.raises(runs.StoreError, match="is a file where the folder of run toy/"):
        runs.get("toy", {"x": 1}, counting(calls), tmp_path)
    assert calls == []


@pytest.mark.parametrize("where", ["root", "kind"])
def test_a_file_where_the_store_should_be_fails_before_computing(tmp_path, where):
    calls = []
    target = tmp_path / "store" if where == "root" else tmp_path / "store" / "toy"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("")
    with pytest.raises(runs.StoreError, match="is a file where a folder should be"):
        runs.get("toy", {"x": 1}, counting(calls), tmp_path / "store")
    assert calls == []


def test_an_unwritable_store_fails_before_computing(tmp_path):
    calls = []
    with pytest.raises(runs.StoreError, match="cannot be created|not writable|lock file"):
        runs.get("toy", {"x": 1}, counting(calls), "/proc/repro-runs")
    assert calls == []


# ---------------------------------------------------------------------- claims: kill, wait, compute once

WORKER = """
import json, os, sys, time
from repro import runs
runs.KINDS["toy"] = runs.Kind(print, 1)
store, x, sleep, log = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
def compute(config, workdir):
    with open(log, "a") as f:
        f.write(f"start {os.getpid()}\\n")
    time.sleep(sleep)
    return {"value": config["x"] ** 2, "pid": os.getpid()}
path = runs.get("toy", {"x": x}, compute, store)
print(json.dumps(runs.read_metrics("toy", path.name, store)))
"""


def _wait_for(log, text, proc, seconds=60):
    import time
    deadline = time.time() + seconds
    while not (log.exists() and text in log.read_text()):
        assert time.time() < deadline and proc.poll() is None, f"worker did not reach {text!r}"
        time.sleep(0.02)


def test_sigkill_while_holding_a_claim_then_restart_computes_it(tmp_path):
    import signal
    log = tmp_path / "log.txt"
    proc = subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path), "8", "60", str(log)])
    _wait_for(log, "start", proc)
    rid = runs.run_id("toy", {"x": 8})
    assert (tmp_path / "toy" / f".lock-{rid}").exists() and list((tmp_path / "toy").glob(f".tmp-{rid}-*"))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    path = runs.get("toy", {"x": 8}, square, tmp_path)  # the kernel released the claim: no wait
    assert runs.read_metrics("toy", rid, tmp_path)["value"] == 64 and path.name == rid
    assert sorted(p.name for p in (tmp_path / "toy").iterdir()) == [rid]


def test_two_processes_asking_for_one_run_compute_it_once(tmp_path):
    log = tmp_path / "log.txt"
    first = subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path), "9", "2", str(log)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(log, "start", first)
    second = subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path), "9", "0", str(log)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out1, _ = first.communicate(timeout=120)
    out2, err2 = second.communicate(timeout=120)
    assert first.returncode == second.returncode == 0, err2
    assert log.read_text().count("start") == 1  # the second waited and read the first one's result
    assert json.loads(out1) == json.loads(out2) and json.loads(out2)["pid"] == first.pid
    assert "waiting for run toy/" in err2


# ---------------------------------------------------------------------- deterministic artifacts

def test_safetensors_files_are_byte_identical_whatever_the_metadata_order(tmp_path):
    import torch
    from safetensors.torch import load_file
    from safetensors import safe_open

    tensors = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.tensor([1, 2])}
    orders = [{"config": "{}", "epoch": "2", "a": "x"}, {"a": "x", "epoch": "2", "config": "{}"}]
    digests = set()
    for i, meta in enumerate(orders * 3):
        runs.save_safetensors(tmp_path / f"{i}.safetensors", tensors, metadata=meta)
        digests.add(runs.sha256(tmp_path / f"{i}.safetensors"))
    assert len(digests) == 1
    back = load_file(tmp_path / "0.safetensors")
    assert torch.equal(back["w"], tensors["w"]) and torch.equal(back["b"], tensors["b"])
    with safe_open(str(tmp_path / "0.safetensors"), "pt") as f:
        assert f.metadata() == orders[0]


def test_a_damaged_run_counts_as_missing_for_sweeps_and_is_redone(tmp_path, capsys):
    from repro import sweep

    calls = []
    path = runs.get("toy", {"x": 2}, counting(calls), tmp_path)
    (path / "artifact.txt").unlink()
    assert not runs.is_done(path) and not sweep.plan("toy", [{"x": 2}], tmp_path)["cached"].any()
    sweep.run("toy", [{"x": 2}], store=tmp_path, compute=counting(calls))
    assert calls == [2, 2] and runs.is_done(path) and "artifact.txt is missing" in capsys.readouterr().err


def test_repro_runs_verify_lists_then_fixes(tmp_path, capsys):
    from repro import cli

    runs.get("toy", {"x": 1}, square, tmp_path)
    bad = runs.get("toy", {"x": 2}, square, tmp_path)
    (bad / "metrics.json").write_text("{}")
    assert cli.main(["runs", "verify", "--store", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"FAIL toy/{bad.name}: metrics.json has 2 bytes" in out and "2 runs checked, 1 failing" in out
    assert cli.main(["runs", "verify", "--store", str(tmp_path), "--fix"]) == 0
    assert f"removed toy/{bad.name}" in capsys.readouterr().out and not bad.exists()
    assert cli.main(["runs", "verify", "--store", str(tmp_path)]) == 0
    assert "1 runs checked, 0 failing" in capsys.readouterr().out


def test_a_store_without_file_locks_still_computes_with_a_warning(tmp_path, monkeypatch, capsys):
    import errno
    import fcntl

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    path = runs.get("toy", {"x": 3}, square, tmp_path)
    assert runs.is_done(path) and "does not support file locks" in capsys.readouterr().err


# ---------------------------------------------------------------------- the registry of run kinds

def test_a_kind_registers_its_artifacts_and_a_run_without_them_fails_its_check(tmp_path, monkeypatch):
    monkeypatch.setitem(runs.KINDS, "toy", runs.Kind(square, 1, lambda metrics: ["artifact.txt"]))
    path = runs.get("toy", {"x": 2}, store=tmp_path)  # the registered compute
    assert runs.check_run(path) is None and (path / "artifact.txt").read_text() == "2"
    (path / "artifact.txt").unlink()
    assert "artifact artifact.txt is missing" in runs.check_run(path)
    with pytest.raises(ValueError, match="did not write the artifact"):
        runs.get("toy", {"x": 3}, lambda config, workdir: {"value": 1}, tmp_path)
    assert not (tmp_path / "toy" / runs.run_id("toy", {"x": 3})).exists()


def test_every_registered_kind_names_an_importable_compute_and_a_version():
    for name, kind in runs.KINDS.items():
        if name == "toy":
            continue
        assert callable(runs.compute_function(name)) and kind.version >= 1
        assert kind.batch is None or callable(runs.import_function(kind.batch))


def test_load_of_any_kind_works_in_a_fresh_interpreter_without_importing_its_code(tmp_path):
    script = ("import sys; from repro import runs; print(len(runs.load('heads', sys.argv[1])), "
              "len(runs.load('svm', sys.argv[1])), sorted(m for m in ('repro.heads', 'repro.erm', 'torch') "
              "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0", "0", "[]"]


# ---------------------------------------------------------------------- damages on a real smoke store

def _digit(text: str) -> str:
    """One digit of the first fraction changed: valid JSON, same size."""
    at = text.index("0.") + 2
    return text[:at] + str((int(text[at]) + 1) % 10) + text[at + 1:]


def _other_numbers(text: str) -> str:
    """Every fraction's digits d -> 9 - d: valid JSON of the same length, other numbers."""
    import re
    return re.sub(r"\.(\d+)", lambda m: "." + "".join(str(9 - int(c)) for c in m.group(1)), text)


def _flip(path):
    data = bytearray(path.read_bytes())
    data[-5] ^= 1  # a byte of the last tensor's data
    path.write_bytes(bytes(data))


def _halve(path):
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])


DAMAGES = {  # name: (kind, index of the run in the plan, damage of its folder)
    "erm metrics digit": ("erm", 1, lambda p: (p / "metrics.json").write_text(_digit((p / "metrics.json").read_text()))),
    "erm features byte": ("erm", 0, lambda p: _flip(p / "features_epoch2.safetensors")),
    "erm config seed": ("erm", 1, lambda p: (p / "config.json").write_text(
        (p / "config.json").read_text().replace('"seed": 2', '"seed": 7'))),
    "heads manifest and half head": ("heads", 0, lambda p: ((p / "manifest.json").unlink(),
                                                             _halve(p / "head.safetensors"))),
    "heads metrics other numbers": ("heads", 1, lambda p: (p / "metrics.json").write_text(
        _other_numbers((p / "metrics.json").read_text()))),
    "erm manifest and half features": ("erm", 0, lambda p: ((p / "manifest.json").unlink(),
                                                             _halve(p / "features_epoch2.safetensors"))),
}


def _serve(plan: dict, store):
    """What a warm build does: compute the missing runs, read their tables and the features sections read."""
    from repro import features, sweep

    for kind in ("erm", "heads"):
        sweep.run(kind, plan[kind], store=store)
    tables = {kind: runs.results(kind, plan[kind], store).drop(columns=["path", "wall_s"]) for kind in plan}
    cached = [features.load(runs.run_dir("erm", c, store)) for c in plan["erm"]]
    return tables, cached


def _bytes(store) -> dict:
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.glob("*/*/*"))
            if p.name not in ("meta.json", "manifest.json")}  # (meta.json holds the wall time)


@pytest.fixture(scope="module")
def smoke_store(tmp_path_factory):
    """A finished store of two smoke ERM runs on the Waterbirds twin (seeds 1, 2) and two heads of the first."""
    from repro import heads, sections, synth

    tmp = tmp_path_factory.mktemp("smoke-store")
    data_root = str(tmp / "data")
    synth.ensure(data_root, ["waterbirds"], scale="smoke")
    erm = [sections.erm_config("waterbirds", "smoke", data_root, seed) for seed in (1, 2)]
    rid = runs.run_id("erm", erm[0])
    plan = {"erm": erm, "heads": [heads.head_config(rid, spec, "waterbirds", "smoke") for spec in
                                  ({"method": "llr", "seed": 1}, {"method": "afr", "seed": 1, "gamma": 0.0, "l2": 0.0})]}
    tables, cached = _serve(plan, tmp / "runs")
    return plan, tmp / "runs", tables, cached


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_run_is_reported_by_verify_never_served_and_recomputed_with_one_line(
        smoke_store, tmp_path, capsys, damage):
    import shutil

    from repro import cli

    plan, pristine, tables, cached = smoke_store
    store = tmp_path / "runs"
    shutil.copytree(pristine, store)
    kind, index, harm = DAMAGES[damage]
    rid = runs.run_id(kind, plan[kind][index])
    harm(store / kind / rid)
    capsys.readouterr()
    assert cli.main(["runs", "verify", "--store", str(store)]) == 1
    out = capsys.readouterr().out
    assert f"FAIL {kind}/{rid}: " in out and "4 runs checked, 1 failing" in out
    if damage != "erm features byte":  # (its numbers are intact; its features are checked when read)
        assert rid not in set(runs.load(kind, store)["run_id"])
    capsys.readouterr()
    again, features = _serve(plan, store)
    lines = [line for line in capsys.readouterr().err.splitlines() if rid in line]
    assert len(lines) == 1 and lines[0].startswith(f"run {kind}/{rid}: ") and "computing it again" in lines[0], lines
    for name in tables:
        assert again[name].equals(tables[name]), name
    assert all(a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a) for a, b in zip(features, cached))
    assert _bytes(store) == _bytes(pristine) and runs.verify_store(store) == (4, [])


def _claim(path, out):
    """In a spawned child: try the lock its parent holds; report how it ended."""
    try:
        with runs.file_lock(path, "the test lock"):
            out.put("acquired")
    except runs.StoreError as err:
        out.put(str(err))


def test_a_pool_worker_waiting_on_its_parents_lock_is_an_error_not_a_deadlock(tmp_path):
    """A script without a __main__ guard is re-run by each spawned pool worker: a worker that then waits on the
    build lock its parent holds (the parent waiting for the workers) would hang forever; it fails with the fix."""
    import multiprocessing
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    with runs.file_lock(tmp_path / ".lock", "the test lock"):
        child = ctx.Process(target=_claim, args=(tmp_path / ".lock", out))
        child.start()
        child.join(timeout=60)
        alive = child.is_alive()
        if alive:
            child.kill()
    assert not alive, "the child waited on its parent's lock"
    message = out.get(timeout=5)
    assert "__main__" in message and str(os.getpid()) in message
