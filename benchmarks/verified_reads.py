"""Time reading every run of a run store with verified reads against the same reads without sha256 checks.

    python benchmarks/verified_reads.py [--store DIR] [--repeats 5]

The store defaults to $REPRO_RUNS, else ./runs (repro.runs.default_root). One pass reads what a warm build and
its notebooks read, for every kind: `runs.load(kind)` (each run's config, metrics and meta, checked against
the manifest), then every .safetensors artifact of every finished run (feature caches, checkpoints, heads)
through `runs.artifact` and `safetensors.torch.load_file`.

- verified: the store's own code; the record of already-hashed artifacts is cleared before each pass, so every
  pass costs what a fresh process pays (each artifact hashed once);
- unverified: the same code with the sha256 comparisons switched off (sizes, config hash and manifest are still
  checked), i.e. the reads as they were before verified reads.

Passes alternate (after one warm-up pass of each, so that both read from the page cache) and the median wall
time of each is printed with their ratio. Run it on an idle machine on a warm store (e.g. the cpu profile's
runs after a `repro book cpu`): compare numbers from one run, and quote its load average.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

from safetensors.torch import load_file

from repro import runs


def read_all(store: runs.Store, artifacts: bool = True) -> tuple[int, int]:
    """Read every run of `store`: its tables (what a warm build reads) and, with `artifacts`, every artifact's
    tensors (what a build that computes heads or SVM paths reads); (runs read, artifact bytes read)."""
    n_runs = n_bytes = 0
    for kind in sorted(runs.KINDS):
        if not (store.root / kind).is_dir():
            continue
        table = runs.load(kind, store)
        n_runs += len(table)
        for folder in table["path"] if artifacts else ():
            for path in sorted(Path(folder).glob("*.safetensors")):
                n_bytes += sum(t.numel() * t.element_size() for t in load_file(str(runs.artifact(path))).values())
    return n_runs, n_bytes


@contextmanager
def unverified():
    """The store's checks without their sha256 comparisons (sizes only, as before verified reads)."""
    mismatch = runs._mismatch

    def sizes_only(file, size, digest, data=None, hashed=True):
        return mismatch(file, size, digest, data, hashed=False)

    with mock.patch.object(runs, "_mismatch", sizes_only), \
            mock.patch.object(runs, "_artifact_problem", lambda path: None):
        yield


def timed(store: runs.Store, verify: bool, artifacts: bool) -> float:
    runs.forget_verified()
    start = time.perf_counter()
    if verify:
        read_all(store, artifacts)
    else:
        with unverified():
            read_all(store, artifacts)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=None, help="run store (default $REPRO_RUNS or ./runs)")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes of each (default 5)")
    args = parser.parse_args()
    store = runs.Store(args.store)
    if not store.root.is_dir():
        print(f"error: no run store at {store.root}; pass --store DIR or set REPRO_RUNS", file=sys.stderr)
        raise SystemExit(2)
    n_runs, n_bytes = read_all(store)  # warm-up (page cache), verified
    print(f"store {store.root}: {n_runs} runs, {n_bytes / 2**20:.1f} MiB of artifact tensors; "
          f"load average {os.getloadavg()[0]:.2f}; median of {args.repeats} passes each")
    for artifacts, what in ((False, "run tables (a warm build)"), (True, "run tables and every artifact")):
        timed(store, False, artifacts)
        times = {True: [], False: []}
        for _ in range(args.repeats):
            for verify in (False, True):
                times[verify].append(timed(store, verify, artifacts))
        plain, checked = statistics.median(times[False]), statistics.median(times[True])
        print(f"{what}: unverified {plain:.3f} s   verified {checked:.3f} s   ratio {checked / plain:.2f}")


if __name__ == "__main__":
    main()
