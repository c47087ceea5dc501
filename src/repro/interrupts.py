"""Interrupts: Ctrl-C (SIGINT) and SIGTERM end a command with one line, and every process it started ends too.

The command (repro.cli) turns either signal into `Interrupted`, a KeyboardInterrupt that carries the signal,
so the clean-ups already written for Ctrl-C (a run's temporary folder removed, its claim released) run for
both; they take at most a few seconds, and a second signal ends the command at once. The workers of a
process pool ignore SIGINT (a terminal sends it to the whole foreground process group: the pool's owner
decides) and end on SIGTERM, after their run has removed its temporary folder (`stop` sends it, then SIGKILL
to any worker still alive after a grace period). Notebook kernels run in their own session, out of the
terminal's reach: `tracked` records the kernels a build starts, and `stop_kernels` ends their process groups.
Imports nothing of the package.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
import weakref

SIGNALS = (signal.SIGINT, signal.SIGTERM)
GRACE_S = 10.0  # how long a stopped process may take to clean up before it is killed


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; `signum` says which (the exit code is 128 + signum, as a shell's)."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def handled():
    """While inside (in the main thread): the first SIGINT or SIGTERM raises Interrupted, whose clean-up takes
    at most a few seconds; a second one ends the process at once (one line; the pool's workers end with their
    run, kernels within a second, as they do when the command is killed). The previous handlers are restored
    on leaving. Elsewhere than in the main thread: nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if first[0]:
            first[0] = False
            raise Interrupted(signum)
        print(message(Interrupted(signum)) + " (second signal: not waiting for the clean-up)", file=sys.stderr,
              flush=True)
        os._exit(128 + signum)

    first = [True]
    saved = {sig: signal.signal(sig, handler) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, previous in saved.items():
            signal.signal(sig, previous)


def exit_code(err: BaseException) -> int:
    """128 + the signal number (130 for SIGINT, a plain KeyboardInterrupt included; 143 for SIGTERM)."""
    return 128 + getattr(err, "signum", signal.SIGINT)


def message(err: BaseException) -> str:
    """The one line a command prints when interrupted."""
    what = "terminated" if getattr(err, "signum", signal.SIGINT) == signal.SIGTERM else "interrupted"
    return f"{what}; finished runs are kept, rerun to resume"


# ------------------------------------------------------------------------------------------ pool workers

class _Stopped(BaseException):
    """SIGTERM in a pool worker while it computes: unwinds the run (temporary folder removed, claim released)."""


_BUSY = [False]  # a pool worker is inside `call`


def _worker_sigterm(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one is enough: a second must not cut the clean-up short
    if _BUSY[0]:
        raise _Stopped
    os._exit(128 + signum)  # idle: nothing to clean up


def worker() -> None:
    """In a pool worker, at start: ignore SIGINT, end on SIGTERM (see the module docstring)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _worker_sigterm)


def call(fn, *args):
    """fn(*args) in a pool worker; on SIGTERM the worker exits once fn has unwound."""
    _BUSY[0] = True
    try:
        return fn(*args)
    except _Stopped:
        os._exit(128 + signal.SIGTERM)
    finally:
        _BUSY[0] = False


def stop(processes, grace: float = GRACE_S) -> None:
    """SIGTERM to each multiprocessing process, then SIGKILL to those still alive after `grace` seconds."""
    processes = [p for p in processes if p.is_alive()]
    for p in processes:
        p.terminate()
    deadline = time.monotonic() + grace
    for p in processes:
        p.join(max(0.0, deadline - time.monotonic()))
    for p in processes:
        if p.is_alive():
            p.kill()
            p.join()


# ------------------------------------------------------------------------------------------ notebook kernels

_KERNELS: weakref.WeakSet = weakref.WeakSet()  # kernel managers of the notebooks executing now


def tracked(manager_class):
    """A subclass of a jupyter_client kernel manager class that records its kernels for `stop_kernels`."""
    class Tracked(manager_class):
        async def start_kernel(self, **kw):
            await super().start_kernel(**kw)
            _KERNELS.add(self)  # (one started a moment before an interrupt is found by stop_kernels' next round)

    return Tracked


def _kernel_group(manager) -> int | None:
    provisioner = getattr(manager, "provisioner", None)
    pgid = getattr(provisioner, "pgid", None)
    process = getattr(provisioner, "process", None)
    return pgid or getattr(process, "pid", None)


def stop_kernels(futures, grace: float = GRACE_S) -> None:
    """End the notebook executions `futures` by their tracked kernels' process groups (the kernel and what its
    cells started): SIGTERM, then SIGKILL after `grace` seconds; at most 2 * grace seconds, then SIGKILL to what
    is left of those groups. A kernel ends at once on SIGTERM and a pool's worker in its group after its run has
    removed its temporary folder; a run the kernel computed itself leaves one, which the next process to claim
    the run removes. (SIGINT first, as Jupyter's interrupt, would let the cell unwind, but an interrupted
    kernel's shutdown prints asyncio warnings on the console.)"""
    import concurrent.futures

    start, groups = time.monotonic(), set()
    while not all(f.done() for f in futures) and time.monotonic() - start < 2 * grace:
        signum = signal.SIGTERM if time.monotonic() - start < grace else signal.SIGKILL
        for manager in list(_KERNELS):
            group = _kernel_group(manager)
            if group:
                groups.add(group)
                _signal_group(group, signum)
        concurrent.futures.wait(futures, timeout=0.5)
    for group in groups:  # e.g. a process a cell started and that ignores SIGTERM
        _signal_group(group, signal.SIGKILL)


def _signal_group(group: int, signum: int) -> None:
    try:
        os.killpg(group, signum)
    except (ProcessLookupError, PermissionError):
        pass
