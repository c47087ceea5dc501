"""Several processes on one fresh run store: claimed runs are computed once, and results are reproducible. Two
checkouts that share one environment build into their own trees; a second build of one tree waits for the first.

Three processes build three sections that share runs (Figure 3/Table 1, Figure 5 and Appendix A share the base
ERM run, a head and six balanced ERM runs) on the smoke Waterbirds twin, which they also write concurrently.
Then one section is rebuilt by a fresh process into a second store: every file of every shared run
(metrics.json of ERM, heads and SVM runs, checkpoints, feature caches, heads) is byte-identical.
"""
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from repro import book, runs
from tests.conftest import REPO, SRC, book_tree, waiting_notebook

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


def _build_in(root: Path, err: Path) -> subprocess.Popen:
    """`repro book --profile smoke` run from `root`, with the package under test (not a copy in the tree)."""
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "repro", "book", "--profile", "smoke"], cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=err.open("w"), text=True)


def test_two_checkouts_sharing_one_environment_build_into_their_own_trees(tmp_path):
    trees = [waiting_notebook(book_tree(tmp_path / name, "book/wait"), 2.0) for name in ("one", "two")]
    index = REPO / "_build" / "html" / "index.html"
    stamp = index.stat().st_mtime_ns if index.exists() else None
    procs = [_build_in(root, tmp_path / f"{root.name}.err") for root in trees]  # at the same time
    for root, proc in zip(trees, procs):
        out, _ = proc.communicate(timeout=900)
        assert proc.returncode == 0, (tmp_path / f"{root.name}.err").read_text()[-3000:]
        lines = out.splitlines()
        assert lines[0] == f"building the book tree of the current directory, {root} (the package is imported " \
                           f"from {REPO})"
        assert lines[-1] == str(root / "_build" / "html" / "index.html") and (root / "_build" / "html").is_dir()
        assert (root / "_build" / "src" / "book" / "wait.ipynb").is_file()
    assert (index.stat().st_mtime_ns if index.exists() else None) == stamp  # the package's own tree: untouched


def test_a_second_build_of_one_tree_waits_for_the_first(tmp_path):
    root = waiting_notebook(book_tree(tmp_path / "tree", "book/wait"), 0.0)
    err = tmp_path / "second.err"
    with book.tree(root):  # the first build, as far as the lock can tell
        proc = _build_in(root, err)
        deadline = time.monotonic() + 300
        while "waiting for the build folder" not in err.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, err.read_text()[-3000:]
            time.sleep(0.05)
        time.sleep(1.0)
        assert proc.poll() is None and not (root / "_build" / "src").exists()  # it waits, writing nothing
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0 and out.splitlines()[-1] == str(root / "_build" / "html" / "index.html")
    waiting = [line for line in err.read_text().splitlines() if "waiting for" in line]
    assert waiting == [f"waiting for the build folder {root / '_build'}, claimed by {socket.gethostname()} pid "
                       f"{os.getpid()} ({root / '_build' / '.lock'})"]
