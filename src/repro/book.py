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
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from . import provenance
from .datasets import REGISTRY as _DATASETS
from .hparams import PROFILES

# Parameters every template defines and the runner sets itself (a params file may not set them).
RUNNER_KEYS = ("profile", "params_yaml")


class BookError(RuntimeError):
    """A book build failed for a reason the user can fix; the message says how."""


def repo_root(start: Path | None = None) -> Path:
    """The nearest folder above `start` (default: this file, then cwd) holding `_toc.yml`."""
    for base in ([start] if start else []) + [Path(__file__).resolve(), Path.cwd()]:
        for folder in [base, *base.parents]:
            if (folder / "_toc.yml").is_file() and (folder / "book").is_dir():
                return folder
    raise BookError("cannot find the repository root (a folder with _toc.yml and book/); run from the repository")


def toc_entries(root: Path) -> list[str]:
    """Every `file:` of `_toc.yml` in order, as paths relative to the root without suffix."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(items):
        for item in items or []:
            if "file" in item:
                files.append(item["file"])
            walk(item.get("sections"))
            for part in item.get("parts", []) if isinstance(item, dict) else []:
                walk(part.get("chapters"))

    walk(toc.get("chapters"))
    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    return files


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


# Allowed values of the section parameters (each element, for a list): key -> (test, words for the error).
PARAM_RULES = {
    "datasets": (lambda v: v in _DATASETS, f"dataset names ({', '.join(_DATASETS)})"),
    "seeds": (lambda v: v >= 0, "integers >= 0"), "llr_seeds": (lambda v: v >= 0, "integers >= 0"),
    "seed": (lambda v: v >= 0, "an integer >= 0"), "synth_seed": (lambda v: v >= 0, "an integer >= 0"),
    "gammas": (lambda v: v >= 0, "numbers >= 0"), "ratios": (lambda v: 0 < v <= 1, "numbers in (0, 1]"),
    "workers": (lambda v: v >= 1, "an integer >= 1"), "executor": (lambda v: v in ("local", "slurm"), "local or slurm"),
    "synth_profile": (lambda v: v in ("", "smoke", "cpu"), "'smoke', 'cpu' or '' (real data)"),
    "epoch_factor": (lambda v: v > 0, "a number > 0"), "svm_factor": (lambda v: v > 0, "a number > 0"),
    "svm_points": (lambda v: v >= 2, "an integer >= 2"), "n_train": (lambda v: v >= 1, "an integer >= 1"),
    "n_heldout": (lambda v: v >= 1, "an integer >= 1"), "p_major": (lambda v: 0 < v < 1, "a number in (0, 1)"),
    "noise": (lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    "backbones": (lambda v: v in ("", "pretrained", "scratch"),
                  "'pretrained' or 'scratch' (cpu profile; repro.hparams.BACKBONES) or '' (the profile's models)"),
    "model_overrides": (lambda v: set(v) <= set(_DATASETS) and all(isinstance(m, str) for m in v.values()),
                        f"a mapping of dataset names ({', '.join(_DATASETS)}) to model names"),
}


def _check_param(where: str, key: str, default, value) -> None:
    """Type (and element type, for lists) against the template default, then PARAM_RULES; BookError if bad."""
    def fail(want):
        raise BookError(f"{where}: key {key!r} must be {want}, got {value!r}")

    if not _type_ok(default, value):
        fail(f"{type(default).__name__} (template default {default!r})")
    if isinstance(default, list) and default:
        if not value:
            fail(f"a non-empty list (template default {default!r})")
        bad = [v for v in value if not _type_ok(default[0], v)]
        if bad:
            fail(f"a list of {type(default[0]).__name__} (template default {default!r}); {bad[0]!r} is not")
    test, words = PARAM_RULES.get(key, (None, ""))
    if test is not None and value is not None:
        if not all(test(v) for v in (value if isinstance(value, list) else [value])):
            fail(words)


def load_params(root: Path, name: str, profile: str) -> dict:
    """Read and validate params/<profile>/<name>.yml against the template's parameters cell: keys, types,
    element types of lists, non-empty grids and value ranges (PARAM_RULES). Every error names file and key."""
    if profile not in PROFILES:
        raise BookError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    path = root / "params" / profile / f"{name}.yml"
    where = path.relative_to(root)
    if not path.is_file():
        raise BookError(f"missing params file {where} for notebook {name!r} "
                        f"(every notebook in _toc.yml needs one per profile); create it with the {profile} values")
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise BookError(f"{where}: not valid YAML{at} ({getattr(err, 'problem', None) or type(err).__name__})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise BookError(f"{where}: cannot read it ({err})") from None
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
        _check_param(str(where), key, defaults[key], value)
    return values


def _stage(root: Path, stage: Path, profile: str) -> None:
    """Copy config, TOC and Markdown pages into the staging folder; the profile becomes a substitution."""
    stage.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((root / "_config.yml").read_text())
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
                                       kernel_manager_class=_kernel_manager(transport, ip))
    except PapermillExecutionError as err:
        raise BookError(f"notebook {name!r} failed in cell {err.exec_count}: {err.ename}: {err.evalue}\n"
                        f"partly executed notebook: {tmp}") from None
    from repro import page  # (lazy: page imports the training code)

    page.remove_injected(tmp)  # papermill's parameters cell: its values are in the provenance table
    _relative_paths(tmp, root)
    tmp.replace(out)
    return time.time() - start


def _relative_paths(path: Path, root: Path) -> None:
    """Papermill records the notebook's input and output paths; keep them relative to the repository, so that no
    path of the building machine reaches the HTML sources or an archive."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
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
          rehearse: bool = False) -> Path:
    """Execute the notebooks (all, or `only`) and build the HTML book; return the path of index.html.

    rehearse: run the paper profile end to end on a CPU with shrunk sizes (repro.rehearse)."""
    root = root or repo_root()
    if rehearse:
        if profile != "paper":
            raise BookError(f"--rehearse rehearses the paper profile; use --profile paper (got {profile!r})")
        saved = {k: os.environ.get(k) for k in ("REPRO_REHEARSE", "REPRO_RUNS")}
        try:
            return _build(profile, only, root, log, rehearse)
        finally:  # leave the environment of the calling process as it was
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    return _build(profile, only, root, log, rehearse)


def precompute(root: Path, names: list[str], profile: str, params: dict, log=print) -> dict[str, int]:
    """Compute every run that the sections among `names` need before their notebooks execute, so that the
    notebooks find them in the run store: the ERM runs of all sections in one sweep, longest first, then their
    heads and SVM runs, in one process pool (repro.sweep.pool) of the largest `workers` of those sections.

    The configs are the sections' own (repro.sections, from the template defaults and `params`, listed with
    the repository as working directory, as the notebooks do), so the runs, their ids and their bytes are
    those a notebook computes alone. A section on Slurm or on its own `device`, or whose data are missing,
    is left to its notebook. Returns {kind: runs computed}; shows repro.sweep.Progress on stderr."""
    from repro import metadata, runs, sections, sweep, synth

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


def _build(profile: str, only: list[str] | None, root: Path, log, rehearse: bool) -> Path:
    names = notebooks(root)
    unknown = sorted(set(only or []) - set(names))
    if unknown:
        raise BookError(f"unknown notebook(s) {', '.join(unknown)}; the TOC lists: {', '.join(names)}")
    params = {name: load_params(root, name, profile) for name in names}  # validate everything first
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
    precompute(root, todo, profile, params, log)
    workers = max([int(params[n].get("workers", 1)) for n in todo] or [1])
    log(f"executing {len(todo)} notebook(s), {min(workers, len(todo))} at a time ...")
    with concurrent.futures.ThreadPoolExecutor(max(1, min(workers, len(todo)))) as notebooks_:
        futures = {notebooks_.submit(execute, root, name, profile, stage / "book" / f"{name}.ipynb", params[name], log):
                   name for name in todo}
        for i, future in enumerate(concurrent.futures.as_completed(futures), 1):
            secs = future.result()  # a failed notebook stops the build (the others still finish)
            log(f"[{i}/{len(todo)}] {futures[future]}: {secs:.1f} s (total {time.time() - t0:.1f} s)")
    from repro import claims

    log("verdicts: " + claims.stage_counts(stage))  # counted from the glued verdicts, shown by intro and scorecard
    log("building HTML with jupyter-book (warnings are errors) ...")
    cmd = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(stage), "--path-output", str(root),
           "-W", "-n", "--keep-going"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BookError(f"jupyter-book build failed (exit {proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    index = root / "_build" / "html" / "index.html"
    log(f"book built in {time.time() - t0:.1f} s: {index}")
    return index
