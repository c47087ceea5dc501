"""Ctrl-C and SIGTERM during a smoke build: one line, exit 130 / 143, no traceback, and no process left behind.

Each build runs `repro book --profile smoke` in a copy of the book sources, in its own session as a shell runs a
command: Ctrl-C is SIGINT to the whole process group (what a terminal sends), SIGTERM goes to the command's pid
only (what `kill` sends). Every process the build starts inherits a tag in its environment, so a survivor is
found however it was reparented. Interrupted while the process pool computes runs (the run store then holds no
half-written run), and while a notebook executes (its kernel and a process the cell started end).
"""
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

from repro import interrupts
from tests.conftest import SRC, book_tree, waiting_notebook

SIGNALS = [signal.SIGINT, signal.SIGTERM]
TAG = "INTERRUPT_TEST_TAG"


def start_build(root: Path, err: Path, store: Path) -> tuple[subprocess.Popen, str]:
    """`repro book --profile smoke` in `root`, in a new session; stderr to the file `err`. Returns (process, tag)."""
    tag = uuid.uuid4().hex
    env = {**os.environ, TAG: tag, "REPRO_RUNS": str(store), "OMP_NUM_THREADS": "1", "PYTHONPATH": SRC}
    proc = subprocess.Popen([sys.executable, "-m", "repro", "book", "--profile", "smoke"], cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=err.open("w"), text=True, start_new_session=True)
    return proc, tag


def send(proc: subprocess.Popen, signum: int) -> None:
    if signum == signal.SIGINT:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole foreground process group
    else:
        proc.send_signal(signum)


def tagged(tag: str, wait: float = 10.0) -> list:
    """Processes whose environment holds the tag, after waiting up to `wait` seconds for them to end."""
    deadline = time.monotonic() + wait
    while True:
        found = [p.info["cmdline"] for p in psutil.process_iter(["environ", "cmdline"], ad_value=None)
                 if (p.info["environ"] or {}).get(TAG) == tag]
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def wait_for(condition, proc: subprocess.Popen, err: Path, what: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"the build never reached {what}: exit {proc.poll()}\n{err.read_text()[-3000:]}")
        time.sleep(0.05)


def assert_one_line_end(proc: subprocess.Popen, err: Path, before: int, signum: int, tag: str) -> None:
    """Exit 128 + signum; after the signal, stderr says the one line (progress lines aside); no traceback
    anywhere; no tagged process alive."""
    out, _ = proc.communicate(timeout=120)
    text = err.read_text()
    after = [line for line in text[before:].splitlines() if not re.match(r"runs \d+/\d+", line)]
    assert proc.returncode == 128 + signum, text[-3000:]
    assert after == [interrupts.message(interrupts.Interrupted(signum))], text[-3000:]
    assert "Traceback" not in text + out and "KeyboardInterrupt" not in text + out, text[-3000:]
    assert tagged(tag) == []


@pytest.fixture(scope="module")
def section_tree(tmp_path_factory) -> Path:
    """One section (Appendix A on the Waterbirds twin), whose runs the build computes in its process pool."""
    root = book_tree(tmp_path_factory.mktemp("interrupt-section"), "book/appendix_a")
    (root / "params" / "smoke" / "appendix_a.yml").write_text(
        "seeds: [1]\ndatasets: [waterbirds]\ndata_root: data/synth/smoke\nsynth_profile: smoke\nworkers: 2\n")
    return root


@pytest.mark.slow
@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_interrupt_while_the_pool_computes_runs(signum, section_tree, tmp_path):
    store, err = tmp_path / "runs", tmp_path / "stderr.txt"
    proc, tag = start_build(section_tree, err, store)

    def computing():  # a pool worker is writing a run
        return (store / "erm").is_dir() and any(p.name.startswith(".tmp-") for p in (store / "erm").iterdir())

    wait_for(computing, proc, err, "a run being computed")
    before = len(err.read_text())
    send(proc, signum)
    assert_one_line_end(proc, err, before, signum, tag)
    left = [p.name for kind in store.iterdir() for p in kind.iterdir() if p.name.startswith(".tmp-")]
    assert left == []  # no half-written run: what finished is kept, the rest is recomputed


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_interrupt_while_a_notebook_executes(signum, tmp_path):
    marker = tmp_path / "child.pid"
    root = waiting_notebook(book_tree(tmp_path / "tree", "book/wait"), 600.0, str(marker))
    err = tmp_path / "stderr.txt"
    proc, tag = start_build(root, err, tmp_path / "runs")
    wait_for(marker.exists, proc, err, "the notebook's cell")
    wait_for(lambda: marker.read_text().strip(), proc, err, "the child's pid")
    send(proc, signum)
    assert_one_line_end(proc, err, 0, signum, tag)  # the kernel's child process included
    assert list((root / "_build" / "src" / "book").glob("*.partial.ipynb")) == []
