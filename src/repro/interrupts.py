"""Interrupts: Ctrl-C (SIGINT) and SIGTERM end a command with one line, and every process it started ends too.

The command (repro.cli) turns either signal into `Interrupted`, a KeyboardInterrupt that carries the signal,
so the clean-ups already written for Ctrl-C (a run's temporary folder removed, its claim released) run for
both; later signals are ignored while it cleans up, which takes at most a few seconds. The workers of a
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
    """While inside (in the main thread): SIGINT and SIGTERM raise Interrupted; the first one also makes both
    ignored until the block is left, so that the clean-up it starts is not cut short by a second Ctrl-C. The
    previous handlers are restored on leaving. Elsewhere than in the main thread: nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        raise Interrupted(signum)

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
    """End the process groups of the tracked kernels (the kernel and what its cells started) until the
    notebook executions `futures` have ended: SIGTERM, then after `grace` seconds SIGKILL."""
    import concurrent.futures

    deadline = time.monotonic() + grace
    while not all(f.done() for f in futures):
        signum = signal.SIGTERM if time.monotonic() < deadline else signal.SIGKILL
        for manager in list(_KERNELS):
            group = _kernel_group(manager)
            if group:
                try:
                    os.killpg(group, signum)
                except (ProcessLookupError, PermissionError):
                    pass
        concurrent.futures.wait(futures, timeout=0.5)
