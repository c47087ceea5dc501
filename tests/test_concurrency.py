"""Several processes on one fresh run store: claimed runs are computed once, and results are reproducible.

Three processes build three sections that share runs (Figure 3/Table 1, Figure 5 and Appendix A share the base
ERM run, a head and six balanced ERM runs) on the smoke Waterbirds twin, which they also write concurrently.
Then one section is rebuilt by a fresh process into a second store: every file of every shared run
(metrics.json of ERM, heads and SVM runs, checkpoints, feature caches, heads) is byte-identical.
"""
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from repro import runs

SCRIPT = """
import sys
from repro import runs, sections, synth

section, data_root, log = sys.argv[1:4]
compute = runs._compute

def logged(kind, rid, *args, **kw):  # one line per run this process computes
    with open(log, "a") as f:
        f.write(f"{kind}/{rid}\\n")
    return compute(kind, rid, *args, **kw)

runs._compute = logged
synth.ensure(data_root, ["waterbirds"], scale="smoke")
common = dict(datasets=["waterbirds"], seeds=[1], profile="smoke", data_root=data_root)
if section == "margins":
    sections.margins(llr_seeds=(1, 2), svm_points=4, **common)
elif section == "class_balance":
    sections.class_balance(gammas=(0.0,), **common)
else:
    sections.appendix_a(**common)
"""


def _start(section: str, data_root: Path, store: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "REPRO_RUNS": str(store), "OMP_NUM_THREADS": "1", "REPRO_PROGRESS": "0"}
    return subprocess.Popen([sys.executable, "-c", SCRIPT, section, str(data_root), str(log)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(procs) -> None:
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]


def _files(store: Path) -> dict:
    """{kind/run_id/file: sha256} of every run's files that must be reproducible (not meta.json, manifest)."""
    out = {}
    for path in store.glob("*/*/*"):
        if path.is_file() and path.name not in ("meta.json", "manifest.json", "done"):
            out[str(path.relative_to(store))] = runs.sha256(path)
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("concurrent")
    store, log = tmp / "runs", tmp / "computed.log"
    _finish([_start(s, tmp / "data", store, log) for s in ("margins", "class_balance", "appendix_a")])
    return tmp, store, log


def test_three_sections_on_one_fresh_store_compute_every_shared_run_once(built):
    tmp, store, log = built
    computed = Counter(log.read_text().split())
    assert computed and max(computed.values()) == 1, [r for r, n in computed.items() if n > 1]
    on_disk = {f"{p.parent.name}/{p.name}" for p in store.glob("*/*") if not p.name.startswith(".")}
    assert set(computed) == on_disk  # every run in the store was computed exactly once, by one process
    assert {r.split("/")[0] for r in computed} == {"erm", "heads", "svm"}
    assert len([r for r in computed if r.startswith("erm/")]) == 11  # 1 base + 7 balanced + 3 group-balanced
    assert not list(store.glob("*/.*")) and sorted(p.name for p in (tmp / "data").iterdir()) == ["waterbirds"]
    assert runs.verify_store(store) == (len(on_disk), [])


def test_a_fresh_process_rebuilds_byte_identical_runs(built):
    tmp, store, _ = built
    again = tmp / "runs-again"
    _finish([_start("margins", tmp / "data", again, tmp / "again.log")])
    first, second = _files(store), _files(again)
    assert set(second) <= set(first)
    kinds = Counter(name.split("/")[0] for name in second if name.endswith("metrics.json"))
    assert kinds == {"erm": 1, "heads": 2, "svm": 1}
    assert any(name.endswith(".safetensors") for name in second)
    differ = [name for name in second if first[name] != second[name]]
    assert not differ, differ
