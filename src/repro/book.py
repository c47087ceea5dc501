"""Build the book: validate params, execute the notebook templates with papermill, run Jupyter Book.

Sources stay untouched: `book/<name>.ipynb` are templates; executed copies go to `_build/src/book/`, next to a
staged copy of `_config.yml`, `_toc.yml` and the Markdown pages, and `jupyter-book build` runs on that folder
with execution off and warnings as errors. The HTML lands in `_build/html/`.
"""
from __future__ import annotations

import ast
import concurrent.futures
import contextlib
import io
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from . import files, interrupts, provenance
from .datasets import REGISTRY as _DATASETS
from .hparams import PROFILES, TWIN_PROFILES

# Parameters every template defines and the runner sets itself (a params file may not set them).
RUNNER_KEYS = ("profile", "params_yaml")


class BookError(RuntimeError):
    """A book build failed for a reason the user can fix; the message says how."""


def repo_root(start: Path | None = None) -> Path:
    """The book tree: the nearest folder above `start` (default: the current directory) holding _config.yml,
    _toc.yml, book/ and params/, else the checkout the package is imported from. So a checkout builds into
    its own _build, even when several checkouts share one environment."""
    found = files.find_tree(start)
    if found is None:
        raise BookError("cannot find the book tree (a folder with _config.yml, _toc.yml, book/ and params/); "
                        "run from a checkout of the repository")
    return found


_HELD: set[str] = set()  # the trees this process holds the build lock of


@contextlib.contextmanager
def tree(root: Path | None = None, log=print):
    """Hold the build lock of a book tree (default: repo_root(), with a line when it is not the package's
    checkout) and yield the tree: a second build of the same tree waits, with a line saying so, until the
    first has finished writing its _build folder. Re-entrant within a process."""
    if root is None:
        root, package = repo_root(), files.package_tree()
        if package is not None and package != root:
            log(f"building the book tree of the current directory, {root} (the package is imported from {package})")
    root = Path(root)
    key = str(root.resolve())
    if key in _HELD:
        yield root
        return
    from repro import runs

    (root / "_build").mkdir(parents=True, exist_ok=True)
    with runs.file_lock(root / "_build" / ".lock", f"the build folder {root / '_build'}"):
        _HELD.add(key)
        try:
            yield root
        finally:
            _HELD.discard(key)


def toc_entries(root: Path) -> list[str]:
    """Every `file:` of `_toc.yml` in order, as paths relative to the root without suffix."""
    toc = files.read_yaml(root / "_toc.yml")
    entries = [toc["root"]]

    def walk(items):
        for item in items or []:
            if "file" in item:
                entries.append(item["file"])
            walk(item.get("sections"))
            for part in item.get("parts", []) if isinstance(item, dict) else []:
                walk(part.get("chapters"))

    walk(toc.get("chapters"))
    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    return entries


def notebooks(root: Path) -> list[str]:
    """Names of the notebook templates listed in the TOC (book/<name>.ipynb)."""
    return [Path(f).name for f in toc_entries(root) if (root / f"{f}.ipynb").is_file()]


def template_parameters(path: Path) -> dict:
    """Name -> default value (a Python literal) of the `parameters` cell of a template."""
    import papermill

    found = papermill.inspect_notebook(str(path))
    if not found:
        raise BookError(f"{path}: no cell tagged 'parameters'; tag the cell of literals with 'parameters'")
    return {name: ast.literal_eval(spec["default"]) for name, spec in found.items()}


def _type_ok(default, value) -> bool:
    if default is None or value is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


def _device_ok(name: str) -> bool:
    from . import device
    try:
        return name == "" or bool(device.check(name))
    except ValueError:
        return False


def _models_ok(overrides: dict) -> bool:
    if not overrides:
        return True
    from . import models  # (lazy: imports torch)
    return set(overrides) <= set(_DATASETS) and all(m in models.REGISTRY for m in overrides.values())


def _folder_ok(name: str) -> bool:
    return name != "" and "\0" not in name


# Allowed values of the section parameters (each element, for a list): key -> (test, words for the error). Upper
# bounds only keep a value from exhausting the machine (far above any profile's value).
PARAM_RULES = {
    "datasets": (lambda v: v in _DATASETS, f"dataset names ({', '.join(_DATASETS)})"),
    "seeds": (lambda v: v >= 0, "integers >= 0"), "llr_seeds": (lambda v: v >= 0, "integers >= 0"),
    "seed": (lambda v: v >= 0, "an integer >= 0"), "synth_seed": (lambda v: v >= 0, "an integer >= 0"),
    "gammas": (lambda v: v >= 0, "numbers >= 0"), "ratios": (lambda v: 0 < v <= 1, "numbers in (0, 1]"),
    "workers": (lambda v: 1 <= v <= 1024, "an integer >= 1 and <= 1024"),
    "executor": (lambda v: v in ("local", "slurm"), "local or slurm"),
    "synth_profile": (lambda v: v in ("", "smoke", "cpu"), "'smoke', 'cpu' or '' (real data)"),
    "epoch_factor": (lambda v: v > 0, "a number > 0"), "svm_factor": (lambda v: v > 0, "a number > 0"),
    "svm_points": (lambda v: 2 <= v <= 10_000, "an integer >= 2 and <= 10000"),
    "n_train": (lambda v: 1 <= v <= 10**6, "an integer >= 1 and <= 1000000"),
    "n_heldout": (lambda v: 1 <= v <= 10**6, "an integer >= 1 and <= 1000000"),
    "p_major": (lambda v: 0 < v < 1, "a number in (0, 1)"), "noise": (lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    "dfr_resamples": (lambda v: 1 <= v <= 10_000, "an integer >= 1 and <= 10000"),
    "backbones": (lambda v: v in ("", "pretrained", "scratch"),
                  "'pretrained' or 'scratch' (cpu profile; repro.hparams.BACKBONES) or '' (the profile's models)"),
    "model_overrides": (_models_ok, f"a mapping of dataset names ({', '.join(_DATASETS)}) to model names "
                                    "(repro.models.REGISTRY)"),
    "device": (_device_ok, "'' (REPRO_DEVICE or auto), cpu, cuda, cuda:N or mps"),
    "data_root": (_folder_ok, "a folder name"), "real_metadata_root": (_folder_ok, "a folder name"),
}


def _number_problem(value) -> str | None:
    """What a number (or each element of a list of numbers) must be, if it is not finite or is an integer beyond
    files.MAX_INT; else None."""
    many = isinstance(value, list)
    for v in value if many else [value]:
        if isinstance(v, float) and not math.isfinite(v):
            return "a list of finite numbers" if many else "a finite number"
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) > files.MAX_INT:
            return f"{'a list of integers' if many else 'an integer'} of at most {files.MAX_INT}"
    return None


def check_param(where: str, key: str, default, value) -> None:
    """Type (and element type, for lists) against the template default, finite numbers and bounded integers,
    then PARAM_RULES and the slurm options (repro.sweep.SLURM_OPTIONS); BookError if bad."""
    def fail(want):
        raise BookError(f"{where}: key {key!r} must be {want}, got {files.quote(value)}")

    if not _type_ok(default, value):
        fail(f"{type(default).__name__} (template default {files.quote(default)})")
    if isinstance(default, list) and default:
        if not value:
            fail(f"a non-empty list (template default {files.quote(default)})")
        bad = [v for v in value if not _type_ok(default[0], v)]
        if bad:
            fail(f"a list of {type(default[0]).__name__} (template default {files.quote(default)}); "
                 f"{files.quote(bad[0], 60)} is not")
    problem = _number_problem(value)
    if problem:
        fail(problem)
    test, words = PARAM_RULES.get(key, (None, ""))
    if test is not None and value is not None:
        if not all(test(v) for v in (value if isinstance(value, list) else [value])):
            fail(words)
    if key == "slurm":
        from . import sweep

        problem = sweep.slurm_problem(value)
        if problem:
            fail(problem)


# A section's grid is the product of the lengths of its list parameters (datasets x seeds x ratios ...); each
# combination is a few runs. The paper profile's largest grid is 60 (4 datasets x 3 seeds x 5 ratios or gammas).
GRID_MAX = 10_000


def _check_grid(where, values: dict, defaults: dict) -> None:
    """Stop before a grid larger than GRID_MAX is expanded into run configs (BookError saying how to proceed)."""
    sizes = {k: len(v) for k, v in {**defaults, **values}.items() if isinstance(v, list) and k not in RUNNER_KEYS}
    grid = math.prod(sizes.values())
    if grid > GRID_MAX:
        factors = " x ".join(f"{n:,} {k}" for k, n in sizes.items())
        raise BookError(f"{where}: a grid of {grid:,} combinations ({factors}), each a few runs, "
                        f"is more than {GRID_MAX:,}; shorten the lists, or pass --yes to plan and run it anyway")


def load_params(root: Path, name: str, profile: str, yes: bool = False) -> dict:
    """Read and validate params/<profile>/<name>.yml against the template's parameters cell: keys, types,
    element types of lists, non-empty grids, value ranges (PARAM_RULES) and, unless `yes`, the grid's size
    (GRID_MAX). Every error names file and key."""
    if profile not in PROFILES:
        raise BookError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    path = root / "params" / profile / f"{name}.yml"
    where = path.relative_to(root)
    if not path.is_file():
        raise BookError(f"missing params file {where} for notebook {name!r} "
                        f"(every notebook in _toc.yml needs one per profile); create it with the {profile} values")
    try:
        values = files.read_yaml(path, where)  # data only: no aliases, no repeated keys, bounded size
    except ValueError as err:
        raise BookError(str(err)) from None
    if not values:
        raise BookError(f"{where} is empty: the notebook would run the template's cpu defaults under the {profile} "
                        f"profile; set at least the keys that differ (e.g. data_root)")
    if not isinstance(values, dict):
        raise BookError(f"{where}: expected a mapping of parameter names to values")
    defaults = template_parameters(root / "book" / f"{name}.ipynb")
    allowed = sorted(k for k in defaults if k not in RUNNER_KEYS)
    for key, value in values.items():
        if key not in allowed:
            raise BookError(f"{where}: unknown key {key!r}; allowed keys: {', '.join(allowed)}")
        check_param(str(where), key, defaults[key], value)
    if not yes:
        _check_grid(where, values, defaults)
    return values


def _stage(root: Path, stage: Path, profile: str) -> None:
    """Copy config, TOC and Markdown pages into the staging folder; the profile becomes a substitution."""
    stage.mkdir(parents=True, exist_ok=True)
    config = files.read_yaml(root / "_config.yml")
    parse = config.setdefault("parse", {})
    parse.setdefault("myst_substitutions", {})["profile"] = profile
    (stage / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    shutil.copy2(root / "_toc.yml", stage / "_toc.yml")
    for page in (root / "book").rglob("*"):
        if page.is_file() and page.suffix != ".ipynb" and ".ipynb_checkpoints" not in page.parts:
            target = stage / page.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(page, target)


@contextlib.contextmanager
def _kernel_channels():
    """Yield (transport, ip) for a kernel's channels: IPC sockets in a private folder (mode 0700) of their own,
    under TMPDIR or else /tmp, the first where the sockets' paths fit the platform's limit
    (zmq.IPC_PATH_MAX_LEN: 107 bytes on Linux, 103 on macOS; batch schedulers often set a long TMPDIR); TCP on
    loopback where neither fits or on Windows. The folder is removed afterwards."""
    import zmq

    limit = getattr(zmq, "IPC_PATH_MAX_LEN", 0) if os.name == "posix" else 0
    for base in (tempfile.gettempdir(), "/tmp"):
        # mkdtemp adds 8 characters to the prefix; jupyter_client numbers the sockets kernel-1 ... kernel-5
        if limit and os.path.isdir(base) and len(os.fsencode(os.path.join(base, "repro-kernel-12345678",
                                                                         "kernel-99"))) <= limit:
            folder = tempfile.mkdtemp(prefix="repro-kernel-", dir=base)
            try:
                yield "ipc", str(Path(folder) / "kernel")
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            return
    yield "tcp", "127.0.0.1"


def _kernel_manager(transport: str, ip: str):
    """The kernel manager class papermill starts a kernel with: one that talks to its kernel over `transport`
    at `ip` (from _kernel_channels: Unix sockets where they fit, which spares ipykernel's warning per notebook
    about TCP on localhost), and that does not interrupt the kernel of a finished notebook before shutting it
    down (which ipykernel may report as an ERROR line)."""
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import CaselessStrEnum, Unicode

    class QuietKernelManager(AsyncKernelManager):
        async def _async_interrupt_kernel(self):
            if not self.shutting_down:  # jupyter_client interrupts before every shutdown: nothing runs by then
                await super()._async_interrupt_kernel()

    return type("ReproKernelManager", (QuietKernelManager,),
                {"transport": CaselessStrEnum(["tcp", "ipc"], default_value=transport, config=True),
                 "ip": Unicode(ip, config=True)})


def execute(root: Path, name: str, profile: str, out: Path, params: dict, log=print) -> float:
    """Execute one template with papermill into `out`; return wall seconds. Raise BookError on failure."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    yaml_text = yaml.safe_dump(params, sort_keys=True) if params else "{}\n"
    injected = {**params, "profile": profile, "params_yaml": yaml_text}
    tmp = out.with_suffix(".partial.ipynb")
    start = time.time()
    try:
        with _kernel_channels() as (transport, ip):
            papermill.execute_notebook(str(root / "book" / f"{name}.ipynb"), str(tmp), parameters=injected,
                                       cwd=str(root), kernel_name="python3", progress_bar=False,
                                       log_output=False, request_save_on_cell_execute=False,
                                       kernel_manager_class=interrupts.tracked(_kernel_manager(transport, ip)))
    except PapermillExecutionError as err:
        raise BookError(f"notebook {name!r} failed in cell {err.exec_count}: {err.ename}: {err.evalue}\n"
                        f"partly executed notebook: {tmp}") from None
    _tidy_executed(tmp, root)
    tmp.replace(out)
    return time.time() - start


def _tidy_executed(path: Path, root: Path) -> None:
    """Tag papermill's injected-parameters cell `remove-cell` (its values are the params file, which the
    provenance table prints), and keep the notebook's input and output paths that papermill records relative to
    the repository, so that no path of the building machine reaches the HTML sources or an archive."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            cell.metadata["tags"] = [*tags, "remove-cell"]
    meta = nb.metadata.get("papermill", {})
    for key in ("input_path", "output_path"):
        if meta.get(key):
            target = Path(meta[key])
            if key == "output_path":
                target = target.with_name(target.name.replace(".partial.ipynb", ".ipynb"))
            try:
                meta[key] = target.resolve().relative_to(root.resolve()).as_posix()
            except ValueError:
                meta[key] = target.name
    nbformat.write(nb, str(path))


def build(profile: str = "cpu", only: list[str] | None = None, root: Path | None = None, log=print,
          rehearse: bool = False, yes: bool = False) -> Path:
    """Execute the notebooks (all, or `only`) and build the HTML book of the tree `root` (default: repo_root());
    return the path of index.html. Holds the tree's build lock (`tree`).

    rehearse: run the paper profile end to end on a CPU with shrunk sizes (repro.rehearse).
    yes: plan grids larger than GRID_MAX and start runs estimated above repro.cost.HOURS_MAX hours."""
    with tree(root, log) as root:
        if not rehearse:
            return _build(profile, only, root, log, rehearse, yes)
        if profile != "paper":
            raise BookError(f"--rehearse rehearses the paper profile; use --profile paper (got {profile!r})")
        saved = {k: os.environ.get(k) for k in ("REPRO_REHEARSE", "REPRO_RUNS")}
        try:
            return _build(profile, only, root, log, rehearse, yes)
        finally:  # leave the environment of the calling process as it was
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def precompute(root: Path, names: list[str], profile: str, params: dict, log=print, yes: bool = False) -> dict[str, int]:
    """Compute every run that the sections among `names` need before their notebooks execute, so that the
    notebooks find them in the run store: the ERM runs of all sections in one sweep, longest first, then their
    heads and SVM runs, in one process pool (repro.sweep.pool) of the largest `workers` of those sections.

    The configs are the sections' own (repro.sections, from the template defaults and `params`, listed with
    the repository as working directory, as the notebooks do), so the runs, their ids and their bytes are
    those a notebook computes alone. A section on Slurm or on its own `device`, or whose data are missing,
    is left to its notebook. Missing runs estimated above repro.cost.HOURS_MAX start only with `yes`.
    Returns {kind: runs computed}; shows repro.sweep.Progress on stderr."""
    from repro import companions, cost, datasets, metadata, runs, sections, sweep, synth

    wanted: dict[str, list[dict]] = {}
    workers = 1
    here = Path.cwd()
    os.chdir(root)  # relative data roots resolve as in the notebooks (papermill's cwd is the root)
    try:
        local = {}  # the sections computed here: name -> template defaults + params
        for name in names:
            values = {**template_parameters(root / "book" / f"{name}.ipynb"), **params[name]}
            if name in sections.SECTIONS and values.get("executor", "local") == "local" and not values.get("device"):
                local[name] = values
                workers = max(workers, int(values.get("workers", 1)))
        for name, values in local.items():
            if values.get("synth_profile") and values.get("datasets"):
                synth.ensure(values["data_root"], list(values["datasets"]), scale=values["synth_profile"])
            elif values.get("datasets") and all(datasets.get(d).companion for d in values["datasets"]):
                companions.ensure(values["data_root"], list(values["datasets"]), fixture=bool(values.get("fixture")))
            section = sections.SECTIONS[name]
            try:
                for dataset in values.get("datasets", []):
                    metadata.find_root(dataset, values["data_root"])
                planned = section.configs(profile=profile, **{k: values[k] for k in section.params})
            except FileNotFoundError:  # real data not in place: the notebook stops with the fix
                continue
            for kind, configs in planned.items():
                wanted.setdefault(kind, []).extend(configs)
        progress = sweep.Progress(workers)
        missing = {kind: {rid: c for rid, c in sweep.unique(kind, configs).items()
                          if not runs.is_done(runs.run_dir(kind, rid))} for kind, configs in wanted.items()}
        if not any(missing.values()):
            return {kind: 0 for kind in wanted}
        if not yes:
            cost.check_hours(sum(cost.cost(k, c) for k, todo in missing.items() for c in todo.values()),
                             f"the missing runs of {', '.join(local)}")
        log(f"computing the runs of {len(names)} notebook(s) first: "
            + ", ".join(f"{len(v)} {k}" for k, v in missing.items() if v) + f", {workers} worker(s)")
        for kind, todo in missing.items():
            progress.expect(kind, list(todo.values()))
        progress.show()
        for kind in ("erm", *[k for k in wanted if k != "erm"]):  # heads and SVMs read the ERM features
            if kind in wanted:
                with contextlib.redirect_stdout(io.StringIO()):  # its own count lines: the progress line says it
                    sweep.run(kind, wanted[kind], workers=workers, progress=progress)
        progress.close()
        return {kind: len(v) for kind, v in missing.items()}
    finally:
        sweep.shutdown()  # the notebooks find every run in the store: free the workers
        os.chdir(here)


def erm_configs(root: Path, names: list[str], profile: str, params: dict) -> list[dict]:
    """The ERM configs of the sections among `names` as their notebooks list them (template defaults and
    `params`, with the repository as working directory); a section whose run list needs missing data is left out."""
    from repro import sections

    out, here = [], Path.cwd()
    os.chdir(root)
    try:
        for name in (n for n in names if n in sections.SECTIONS):
            values, section = {**template_parameters(root / "book" / f"{name}.ipynb"), **params[name]}, sections.SECTIONS[name]
            try:
                out += section.configs(profile=profile, **{k: values[k] for k in section.params}).get("erm", [])
            except FileNotFoundError:
                continue
    finally:
        os.chdir(here)
    return out


NUMERICS_WORDS = {"bf16": "in bf16 autocast", "fp16": "in fp16 autocast (with a gradient scaler)",
                  "tf32": "with TF32 matrix products", "compile": "compiled by torch.compile"}


def numerics_note(configs: list[dict], profile: str) -> str:
    """The deviations page's last section: how many of the build's distinct ERM runs leave the paper's code's
    fp32 numerics (repro.erm.fast_path), and how."""
    from repro import erm, runs

    distinct = {runs.run_id("erm", c): c for c in configs}
    counts: dict[str, int] = {}
    for config in distinct.values():
        for key in erm.fast_path(config):
            counts[key] = counts.get(key, 0) + 1
    lead = "## Numerics of this build\n\n"
    if not counts:
        return (lead + f"All {len(distinct)} ERM runs of this build (`{profile}` profile) train as the paper's code "
                "does: fp32, without TF32 matrix products or compilation.\n")
    ways = "; ".join(f"{n} {NUMERICS_WORDS[key]}" for key, n in counts.items())
    return (lead + f"Of the {len(distinct)} ERM runs of this build (`{profile}` profile), some leave the fp32 numerics "
            f"of the paper's code for speed: {ways}. Their results round differently from fp32 runs, and they "
            "are distinct runs in the run store. *Follows: neither* (device time).\n")


def note_numerics(page: Path, configs: list[dict], profile: str) -> None:
    """Append `numerics_note` to the staged deviations page (copied afresh by every build)."""
    if page.is_file():
        page.write_text(page.read_text().rstrip("\n") + "\n\n" + numerics_note(configs, profile))


def _stop_notebooks(pool: concurrent.futures.ThreadPoolExecutor, futures: dict, stage: Path) -> None:
    """After an interrupt: start no other notebook, end the running ones' kernels (their threads end with them)
    and remove their partly executed copies."""
    pool.shutdown(wait=False, cancel_futures=True)
    papermill_log = logging.getLogger("papermill")
    papermill_log.disabled = True  # the kernels' deaths are intended: no "Kernel died" lines
    try:
        interrupts.stop_kernels(list(futures))
    finally:
        papermill_log.disabled = False
    for name in futures.values():
        (stage / "book" / f"{name}.partial.ipynb").unlink(missing_ok=True)


def _build(profile: str, only: list[str] | None, root: Path, log, rehearse: bool, yes: bool = False) -> Path:
    names = notebooks(root)
    unknown = sorted(set(only or []) - set(names))
    if unknown:
        raise BookError(f"unknown notebook(s) {', '.join(unknown)}; the TOC lists: {', '.join(names)}")
    params = {name: load_params(root, name, profile, yes) for name in names}  # validate everything first
    if rehearse:
        from repro import rehearse as rehearsal

        defaults = {name: template_parameters(root / "book" / f"{name}.ipynb") for name in names}
        params = rehearsal.start(root, params, defaults, log)
        profile_tag = f"{profile} (rehearsal)"
    else:
        profile_tag = profile
    provenance.warn_environment()  # one stderr line per package that differs from requirements.lock
    stage = root / "_build" / "src"
    built_profile = stage / ".profile"
    if built_profile.is_file() and built_profile.read_text() != profile_tag:
        shutil.rmtree(stage)  # executed notebooks of another profile must not be mixed in
    _stage(root, stage, profile_tag)
    built_profile.write_text(profile_tag)
    (stage / "book").mkdir(parents=True, exist_ok=True)
    todo = [n for n in names if not only or n in only or not (stage / "book" / f"{n}.ipynb").is_file()]
    t0 = time.time()
    precompute(root, todo, profile, params, log, yes)
    note_numerics(stage / "book" / "deviations.md", erm_configs(root, names, profile, params), profile_tag)
    workers = max([int(params[n].get("workers", 1)) for n in todo] or [1])
    log(f"executing {len(todo)} notebook(s), {min(workers, len(todo))} at a time ...")
    with concurrent.futures.ThreadPoolExecutor(max(1, min(workers, len(todo)))) as notebooks_:
        futures = {notebooks_.submit(execute, root, name, profile, stage / "book" / f"{name}.ipynb", params[name], log):
                   name for name in todo}
        try:
            for i, future in enumerate(concurrent.futures.as_completed(futures), 1):
                secs = future.result()  # a failed notebook stops the build (the others still finish)
                log(f"[{i}/{len(todo)}] {futures[future]}: {secs:.1f} s (total {time.time() - t0:.1f} s)")
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM (repro.interrupts)
            _stop_notebooks(notebooks_, futures, stage)
            raise
    from repro import claims

    log(verdict_line(claims.stage_counts(stage), profile))  # the glued verdicts, as the front page counts them
    log("building HTML with jupyter-book (warnings are errors) ...")
    cmd = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(stage), "--path-output", str(root),
           "-W", "-n", "--keep-going"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BookError(f"jupyter-book build failed (exit {proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    index = root / "_build" / "html" / "index.html"
    log(f"book built in {time.time() - t0:.1f} s")  # the caller prints the path of index.html
    return index


_ROLE = re.compile(r"\{[\w:-]+\}`([^`]*)`")  # a MyST role: {bdg-success}`3 supported`


def verdict_line(counts: str, profile: str) -> str:
    """The console's line for the verdict counts of `repro.claims.counts_markdown`: plain text (each badge
    becomes its words, badges separated by commas), saying when the verdicts are on synthetic twins."""
    text = _ROLE.sub(r"\1", re.sub(r"`\s+(?=\{[\w:-]+\}`)", "`, ", counts))
    where = f" on synthetic twins ({profile} profile), not the paper's data" if profile in TWIN_PROFILES else ""
    return f"verdicts{where}: {text}"
