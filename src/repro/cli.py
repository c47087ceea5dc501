"""The `repro` command line: build the book, inspect and make data, run experiments.

    repro book [--profile cpu] [--only NAME ...] [--dry-run] [--yes] [--pdf] [--archive [--with-artifacts]]
               [--device DEVICE] [--runs-per-gpu K|auto]
    repro data table [--root DIR] [--format csv|markdown]
    repro data synth NAME [NAME ...] --root DIR [--scale S] [--seed N]
    repro data download NAME --root DIR    (NAME: a dataset of the paper, or a companion: built from real files)
    repro run erm --dataset NAME [--profile cpu] [--set KEY=VALUE ...] [--yes]
    repro runs verify [--store DIR] [--fix]
    repro params [--write]
    repro bench [--profile cpu] [--only NAME ...] [--seconds 60] [--store DIR]

A bad input (params file, option, REPRO_* variable, data file, run store) or a full disk stops with one line
`error: ...` and exit code 2; Ctrl-C (exit 130) and SIGTERM (exit 143) with one line, after every process the
command started has ended (repro.interrupts).
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import shutil
import sys
import time
from pathlib import Path

from . import __version__, datasets
from . import device as devices
from .files import quote
from .hparams import PROFILES

# The profile of `repro book` and `repro run erm` when none is given: the same, so that a run computed by hand is
# one the book uses.
DEFAULT_PROFILE = "cpu"
_DEVICE_HELP = ("auto (CUDA, then MPS, else CPU; the default), cpu, cuda, cuda:N or mps; sets REPRO_DEVICE. "
                "Not part of a run's identity")


def _book(args) -> int:
    from . import book

    devices.select(args.device)  # the notebooks and their workers inherit it through REPRO_DEVICE
    if args.runs_per_gpu is not None:  # so do the sweeps, through REPRO_RUNS_PER_GPU
        os.environ[devices.RUNS_PER_GPU_ENV] = str(devices.runs_per_gpu(args.runs_per_gpu))
    if args.dry_run:
        from . import plan

        print(plan.book_plan(args.profile, args.only, yes=args.yes))
        return 0
    if args.with_artifacts and not args.archive:
        raise ValueError("--with-artifacts only applies to --archive; add --archive")
    with book.tree() as root:  # this checkout's _build, locked against a second build of it
        index = book.build(args.profile, args.only, root=root, rehearse=args.rehearse, yes=args.yes)
        print(index)
        if args.pdf:
            from . import pdf

            print(pdf.book_pdf(index.parents[2]))  # <root>/_build/html/index.html -> <root>/_build/book.pdf
        if args.archive:
            from . import archive

            print(archive.write(args.profile, with_artifacts=args.with_artifacts, root=root))
    return 0


def _data_table(args) -> int:
    from . import data
    from .book import repo_root

    root = args.root or repo_root() / "data" / "metadata"  # default: the real metadata in the repository
    table = data.composition(root)
    if table.empty:
        raise SystemExit(f"error: no dataset found under {root}; expected folders named "
                         f"{', '.join(datasets.names())} (see `repro data synth --help`)")
    if args.format == "csv":
        sys.stdout.write(table.to_csv(index=False, float_format="%.3f"))
    else:
        sys.stdout.write(table.to_markdown(index=False, floatfmt=".3f") + "\n")
    for name in (n for n in datasets.names() if n not in set(table["dataset"])):
        print(_left_out(name, root, vendored=args.root is None), file=sys.stderr)
    return 0


def _left_out(name: str, root: Path, vendored: bool) -> str:
    """Why dataset `name` is not in the table of `repro data table` (a note on stderr: stdout stays the table)."""
    why = (f"the repository vendors no {name} metadata (data/metadata/SOURCES.md says why)" if vendored
           else f"{root} holds no {name} metadata")
    return (f"note: {name} is not in the table: {why}; `repro data download {name} --root DIR` fetches the real "
            f"data, `repro data synth {name} --root DIR` writes a twin, then `repro data table --root DIR`")


def _data_synth(args) -> int:
    from . import synth

    try:
        scale = float(args.scale)
    except ValueError:
        scale = args.scale  # a profile name: the dataset record's twin_scales
    for name in args.names:
        path = synth.write(name, args.root, scale=scale, seed=args.seed)
        print(f"{name}: {path}")
    return 0


def _data_download(args) -> int:
    if args.name in datasets.companions():  # real files that install offline, built into ROOT/<name>/
        from . import companions

        companions.build(args.name, args.root)
        print(f"{args.name}: {Path(args.root) / args.name}")
        return 0
    from . import download

    download.download(args.name, args.root)
    return 0


def _parse_sets(pairs: list[str]) -> dict:
    """{key: value} of --set KEY=VALUE pairs; VALUE is a YAML literal (1e-3 counts as a number)."""
    import re

    from .files import YAMLDataError, load_yaml

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE, got {quote(pair)}")
        try:
            out[key] = load_yaml(value)
        except YAMLDataError as err:
            raise ValueError(f"--set {quote(pair, 80)}: {quote(value, 60)} is not a YAML literal ({err.problem}); "
                             f"quote a string, write a list as [1, 2]") from None
        if isinstance(out[key], str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", out[key]):
            out[key] = float(out[key])  # YAML 1.1 reads 1e-3 as a string
    return out


def _run_erm(args) -> int:
    from . import cost, erm, runs

    devices.select(args.device)
    overrides = _parse_sets(args.set)
    if "data_root" not in overrides:
        overrides["data_root"] = default_data_root(args.profile, args.dataset)
    config = erm.default_config(args.dataset, args.profile, **overrides)
    cached = runs.is_done(runs.run_dir("erm", runs.run_id("erm", config)))
    if not args.yes and not cached:
        cost.check_hours(cost.cost("erm", config), "this run")
    start = time.time()
    path = erm.run(args.dataset, args.profile, **overrides)
    what = f"the erm run of {args.dataset} ({args.profile} profile)"
    print(f"cached: {what} was in the run store; nothing computed" if cached else
          f"computed: {what} in {time.time() - start:.1f} s, now in the run store", file=sys.stderr)
    print(path)
    return 0


def _runs_verify(args) -> int:
    from . import runs

    store = runs.Store(args.store)
    checked, lines = runs.verify_store(store, fix=args.fix)
    for line in lines:
        print(line)
    failed = sum(line.startswith("FAIL") for line in lines)
    removed = len(lines) - failed
    print(f"{store.root}: {checked} runs checked, {failed} failing" + (f", {removed} removed" if args.fix else "")
          + ("" if not failed else "; `repro runs verify --fix` removes them (they are recomputed on next use)"))
    return 1 if failed else 0


def _params(args) -> int:
    from . import params
    from .book import repo_root

    root = repo_root()
    if args.write:
        for path in params.write(root):
            print(f"wrote {path.relative_to(root)}")
        return 0
    found = params.problems(root)
    for line in found:
        print(line)
    return 1 if found else 0


def _bench(args) -> int:
    from . import plan

    devices.select(args.device)
    if args.seconds <= 0:
        raise ValueError(f"--seconds must be positive, got {args.seconds:g}")
    print(plan.bench(args.profile, args.only, args.seconds, args.store))
    return 0


def default_data_root(profile: str, dataset: str) -> str:
    """data/real for the paper profile; for smoke/cpu data/synth/<profile>, writing the twin if missing; for a
    companion data/companions, building it if missing."""
    if dataset in datasets.companions():
        from . import companions

        companions.ensure(COMPANION_ROOT, [dataset])
        return COMPANION_ROOT
    if profile == "paper":
        return "data/real"
    from . import synth

    root = f"data/synth/{profile}"
    synth.ensure(root, [dataset], scale=profile)
    return root


class _Help(argparse.HelpFormatter):
    """--help with each option's default: "(default: X)" after the help of an option whose default is a value
    (not a flag's False, not None or []: those options say what happens without them)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        shown = not (default is None or default is False or default == [] or default == argparse.SUPPRESS)
        return f"{text} (default: %(default)s)" if shown and "%(default)" not in text else text


class _TopHelp(argparse.RawDescriptionHelpFormatter, _Help):
    """The top-level --help: the module docstring's usage lines as they are written."""


COMPANION_ROOT = "data/companions"


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `repro <command>: error: ...` and exit code 2 (no usage block), and
    --help that shows defaults (_Help)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _Help)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def parser() -> argparse.ArgumentParser:
    names, companions = datasets.names(), datasets.companions()
    p = _Parser(prog="repro", description=__doc__, formatter_class=_TopHelp)
    p.add_argument("--version", action="version", version=f"repro {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("book", help="execute the notebooks and build the HTML book",
                       description="Validate params/<profile>/*.yml, execute book/*.ipynb with papermill into "
                                   "_build/src, then run jupyter-book (warnings are errors).")
    b.add_argument("--profile", default=DEFAULT_PROFILE, choices=PROFILES, help="parameter profile: params/<profile>/")
    b.add_argument("--only", nargs="+", metavar="NAME", help="execute only these notebooks (others reuse their last run)")
    b.add_argument("--dry-run", action="store_true", help="print the runs the profile needs and exit")
    b.add_argument("--device", default=None, metavar="DEVICE", help=_DEVICE_HELP)
    b.add_argument("--runs-per-gpu", default=None, metavar="K", help="sweep runs sharing each GPU: a number, or auto "
                   "(by the memory `repro bench` measured; else 1); sets REPRO_RUNS_PER_GPU. Packed runs use "
                   "deterministic kernels. Not part of a run's identity")
    b.add_argument("--yes", action="store_true", help="plan and run a section's grid larger than "
                   "repro.book.GRID_MAX combinations, and missing runs estimated above repro.cost.HOURS_MAX hours "
                   "(without it, either stops before any run starts)")
    b.add_argument("--rehearse", action="store_true", help="with --profile paper: run every notebook end to end on "
                   "this machine with shrunk sizes and random weights (repro.rehearse), to catch bugs before a "
                   "GPU run; the book says so on every page")
    b.add_argument("--pdf", action="store_true", help="then print every page in TOC order to _build/book.pdf "
                   "(headless Chromium: apt-get install -y chromium)")
    b.add_argument("--archive", action="store_true", help="then pack HTML, PDF, CSVs, lock, params and a run "
                   "manifest with SHA256SUMS into _build/repro-book-<profile>.tar.gz")
    b.add_argument("--with-artifacts", action="store_true", help="with --archive: add every run folder "
                   "(checkpoints, feature caches)")
    b.set_defaults(func=_book)

    d = sub.add_parser("data", help="dataset tools", description="Inspect, synthesize and download datasets.")
    dsub = d.add_subparsers(dest="data_command", required=True)
    t = dsub.add_parser("table", help="dataset composition (paper Table 2)",
                        description="Per dataset and group: y, s, p(y), p(g), p(y|s) on train, and split counts.")
    t.add_argument("--root", type=Path, help="data root holding waterbirds/, celeba/, ... (default: the real "
                   "metadata of Waterbirds, CelebA and MultiNLI in the repository's data/metadata)")
    t.add_argument("--format", choices=("csv", "markdown"), default="csv", help="output format")
    t.set_defaults(func=_data_table)
    s = dsub.add_parser("synth", help="write synthetic twins in the real on-disk formats",
                        description="Write a synthetic twin of each named dataset under ROOT/<name>/.")
    s.add_argument("names", nargs="+", choices=names, metavar="NAME", help=f"one of {', '.join(names)}")
    s.add_argument("--root", required=True, type=Path)
    s.add_argument("--scale", default="cpu", help="fraction of the real split sizes, or a profile name whose "
                                                   "per-dataset scales to use: cpu or smoke")
    s.add_argument("--seed", type=int, default=0, help="seed of the twins' generator")
    s.set_defaults(func=_data_synth)
    dl = dsub.add_parser("download", help="download a real dataset and verify its checksums",
                         description="Fetch, verify and unpack a dataset from its public URLs into ROOT/<name>/; "
                                     "a companion is fetched into ROOT/.raw/ and built into ROOT/<name>/.")
    dl.add_argument("name", choices=names + companions, metavar="NAME",
                    help=f"one of {', '.join(names)} or a companion: {', '.join(companions)}")
    dl.add_argument("--root", required=True, type=Path)
    dl.set_defaults(func=_data_download)

    r = sub.add_parser("run", help="run one experiment through the run store",
                       description="Compute a run unless the run store already holds it; print its directory.")
    rsub = r.add_subparsers(dest="run_command", required=True)
    e = rsub.add_parser("erm", help="ERM finetuning + feature cache",
                        description="Train ERM and cache its features. Data: data/synth/<profile> (twins written "
                                    "on first use) for smoke/cpu, data/real for paper, data/companions for a "
                                    "companion (built on first use), unless --set data_root=DIR.")
    e.add_argument("--dataset", required=True, choices=names + companions)
    e.add_argument("--profile", default=DEFAULT_PROFILE, choices=PROFILES, help="hyperparameters and data of this "
                   "profile, as in `repro book` (smoke: the smallest twins and models, for a first try)")
    e.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override a config value (YAML literal)")
    e.add_argument("--device", default=None, metavar="DEVICE", help=_DEVICE_HELP)
    e.add_argument("--yes", action="store_true", help="start a run estimated above repro.cost.HOURS_MAX hours")
    e.set_defaults(func=_run_erm)

    rs = sub.add_parser("runs", help="inspect the run store", description="Check the run store.")
    rssub = rs.add_subparsers(dest="runs_command", required=True)
    v = rssub.add_parser("verify", help="check every run's manifest, sha256s and config hash",
                         description="Check every run in the store ($REPRO_RUNS or runs/): its done marker, that "
                                     "config.json hashes to its run id, and every artifact's size and sha256 "
                                     "against manifest.json. Exit 1 if a run fails; --fix removes failing runs "
                                     "and abandoned temporary folders (they are recomputed on next use).")
    v.add_argument("--store", type=Path, default=None,
                   help="run store folder (default: $REPRO_RUNS, else the repository's runs/)")
    v.add_argument("--fix", action="store_true", help="remove what fails")
    v.set_defaults(func=_runs_verify)

    pa = sub.add_parser("params", help="check or rewrite the listing of every params file",
                        description="Every params/<profile>/<name>.yml lists each parameter of book/<name>.ipynb's "
                                    "parameters cell: the profile's values as YAML lines, the others as comments with "
                                    "the template's default and meaning. Without --write: one line per file that "
                                    "disagrees with its template, exit 1 if any.")
    pa.add_argument("--write", action="store_true", help="rewrite the files that disagree (values the profile sets "
                    "and free comment lines are kept)")
    pa.set_defaults(func=_params)

    bn = sub.add_parser("bench", help="measure this device's throughput for the dry run's estimates",
                        description="Time training steps and evaluation batches of every model the profile's ERM "
                                    "runs need (at their batch size, image size or sequence length and precision; "
                                    "synthetic inputs, random weights), on this device, in about --seconds; store "
                                    "the rates in <run store>/.calibration/<device>.json, where `repro book "
                                    "--dry-run` and the sweeps' ETA read them (repro.calibration).")
    bn.add_argument("--profile", default="cpu", choices=PROFILES, help="the profile whose models to measure")
    bn.add_argument("--only", nargs="+", metavar="NAME", help="only the models of these sections")
    bn.add_argument("--seconds", type=float, default=60.0, help="time to spend measuring, in all")
    bn.add_argument("--device", default=None, metavar="DEVICE", help=_DEVICE_HELP)
    bn.add_argument("--store", type=Path, default=None, help="run store folder (default $REPRO_RUNS or runs/)")
    bn.set_defaults(func=_bench)
    return p


def _flag(name: str) -> None:
    if os.environ.get(name, "") not in ("", "0", "1"):
        raise ValueError(f"{name}={quote(os.environ[name])}: expected 0 or 1; fix or unset the variable")


def _folder(name: str) -> None:
    if os.environ.get(name) and Path(os.environ[name]).is_file():
        raise ValueError(f"{name}={quote(os.environ[name])} is a file where a folder should be; "
                         f"point it at a folder or unset it")


def _program(name: str) -> None:
    value = os.environ.get(name)
    if value and not (Path(value).is_file() and os.access(value, os.X_OK)):
        raise ValueError(f"{name}={quote(value)} is not an executable file; point it at a Chrome/Chromium "
                         f"binary or unset it")


# Every REPRO_* variable the package reads, with the check of its value, run at start-up whatever the command.
ENVIRONMENT = {
    devices.ENV: lambda name: devices.requested(),
    devices.THREADS_ENV: lambda name: devices.run_threads_count(),
    devices.LOADER_WORKERS_ENV: lambda name: devices.loader_workers(),
    devices.PIXEL_CACHE_ENV: lambda name: devices.pixel_cache(),
    devices.DETERMINISTIC_ENV: _flag,
    devices.RUNS_PER_GPU_ENV: lambda name: devices.runs_per_gpu(),
    "REPRO_REHEARSE": _flag,  # repro.rehearse.ENV, set by --rehearse
    "REPRO_PROGRESS": _flag,  # 0: no per-epoch progress bars (repro.erm)
    "REPRO_RUNS": _folder,  # the run store (repro.runs)
    "REPRO_DATA": _folder,  # the default data folder of ERM configs (repro.erm)
    "REPRO_CHROMIUM": _program,  # the browser of --pdf (repro.pdf)
}


def check_environment() -> None:
    """One ValueError naming the first REPRO_* variable that is unknown or holds a bad value."""
    import difflib

    for name in sorted(k for k in os.environ if k.startswith("REPRO_")):
        if name not in ENVIRONMENT:
            close = difflib.get_close_matches(name, ENVIRONMENT, n=1)
            raise ValueError(f"unknown variable {quote(name, 60)} in the environment"
                             + (f" (did you mean {close[0]}?)" if close else "")
                             + f"; known: {', '.join(ENVIRONMENT)}; unset it")
        ENVIRONMENT[name](name)


def disk_full(err: BaseException) -> bool:
    """Whether `err` is a write that found the disk full (OSError ENOSPC, or a library's error that says so, as
    safetensors' SafetensorError does)."""
    return (isinstance(err, OSError) and err.errno == errno.ENOSPC) or "No space left on device" in str(err)


def _disk_full_line(err: BaseException) -> str:
    """One line naming the folder written (the nearest existing folder of the file, if the error names one; else
    the run store) and the space left on its disk."""
    from . import runs

    filename = getattr(err, "filename", None)
    target = Path(filename).parent if filename else runs.default_root()
    folder = next((p for p in (target, *target.parents) if p.is_dir()), Path.cwd())  # (a temp folder is gone)
    where = f"{folder}" if filename else f"the run store {target} (or another folder this command writes)"
    free = shutil.disk_usage(folder).free / 2**20
    return (f"error: no space left on device writing {where}: {free:.0f} MiB free there; free some space or set "
            f"REPRO_RUNS to a folder on a larger disk, then rerun (finished runs are kept)")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from . import interrupts
    from .book import BookError

    with interrupts.handled():  # (the message is printed under it too: a second Ctrl-C gives no traceback)
        try:
            check_environment()
            return args.func(args)
        except KeyboardInterrupt as err:  # Ctrl-C or SIGTERM: the clean-ups ran on the way (runs, workers, kernels)
            print(("\n" if sys.stderr.isatty() else "") + interrupts.message(err), file=sys.stderr)
            return interrupts.exit_code(err)
        except Exception as err:
            if disk_full(err):
                print(_disk_full_line(err), file=sys.stderr)
                return 2
            if isinstance(err, (BookError, ValueError, OSError)):  # bad input: one line naming the file, key or value
                print(f"error: {err}", file=sys.stderr)
                return 2
            raise
