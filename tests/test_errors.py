"""The catalogue of bad inputs: every one stops the CLI with exit code 2 and one line on stderr that names the
culprit (file, key or value), never a traceback. Each case builds its bad input in a temporary folder, then runs
`repro ...` in-process; none of them trains or downloads anything."""
import dataclasses
import math
import gzip
import io
import shutil
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from repro import book, cli, datasets, erm, runs

REPO = Path(__file__).resolve().parents[1]
LINE_MAX = 600  # characters of an error line, temporary paths included
BOUNDED_LINE_MAX = 300  # ... of the BOUNDED cases (a value is quoted in at most repro.files.QUOTE_CHARS)
SECONDS_MAX = 30  # per case, on a loaded machine: every case stops before any heavy work
FIXTURES = REPO / "tests" / "fixtures" / "root"


# ------------------------------------------------------------------------------------------ builders

def _book_copy(tmp: Path, mp) -> Path:
    """A copy of the book's templates and params that `repro book` uses instead of the repository; executing a
    notebook fails the test (validation must stop the build first)."""
    root = tmp / "repo"
    for name in ("book", "params"):
        shutil.copytree(REPO / name, root / name)
    for name in ("_toc.yml", "_config.yml"):
        shutil.copy2(REPO / name, root / name)
    mp.setattr(book, "repo_root", lambda start=None: root)
    mp.setattr(book, "execute", lambda *a, **k: pytest.fail("a notebook ran although its params are bad"))
    return root


def params(section: str, text: str | None, *extra):
    def build(tmp, mp):
        path = _book_copy(tmp, mp) / "params" / "smoke" / f"{section}.yml"
        if text is None:
            path.unlink()
        else:
            path.write_text(text)
        return ["book", "--profile", "smoke", *extra]
    return build


def only_section(section: str, text: str):
    """params(), then `--only section`, the other notebooks already built (so only its runs are planned)."""
    def build(tmp, mp):
        args = params(section, text, "--only", section)(tmp, mp)
        (tmp / "repo" / "_build" / "src" / "book").mkdir(parents=True)
        for name in book.notebooks(tmp / "repo"):
            if name != section:
                (tmp / "repo" / "_build" / "src" / "book" / f"{name}.ipynb").write_text("{}")
        (tmp / "repo" / "_build" / "src" / ".profile").write_text("smoke")
        return args
    return build


def sets(*pairs, dataset="waterbirds"):
    def build(tmp, mp):
        mp.setenv("REPRO_RUNS", str(tmp / "runs"))
        return ["run", "erm", "--dataset", dataset, "--profile", "smoke", "--set", f"data_root={tmp / 'none'}", *pairs]
    return build


def argv(*words):
    def build(tmp, mp):
        return [w.replace("{tmp}", str(tmp)) for w in words]
    return build


def _fixtures(tmp: Path) -> Path:
    root = tmp / "data"
    shutil.copytree(FIXTURES, root)
    return root


def data_file(damage, command=("data", "table")):
    """A copy of the fixture data root with one file damaged by damage(root), then `repro data table` (or run erm)."""
    def build(tmp, mp):
        root = _fixtures(tmp)
        damage(root)
        mp.setenv("REPRO_RUNS", str(tmp / "runs"))
        if command[0] == "run":
            return ["run", "erm", "--dataset", command[1], "--profile", "smoke", "--set", f"data_root={root}"]
        return [*command, "--root", str(root)]
    return build


def _gz_lines(path: Path, edit) -> None:
    lines = gzip.decompress(path.read_bytes()).split(b"\r\n")
    path.write_bytes(gzip.compress(b"\r\n".join(edit(lines))))


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


CELEBA_ATTR = "celeba/list_attr_celeba.txt.gz"
CELEBA_PART = "celeba/list_eval_partition.txt.gz"
WB_META = "waterbirds/metadata.csv"
CIVIL = "civilcomments/all_data_with_identities.csv"
MNLI = "multinli/metadata_random.csv"
JPEG = "waterbirds/001.Black_footed_Albatross/Black_Footed_Albatross_0009_34.jpg"


def _replace(rel: str, old: bytes, new: bytes, count: int = 1):
    def damage(root):
        path = root / rel
        path.write_bytes(path.read_bytes().replace(old, new, count))
    return damage


def store(kind: str):
    """A run store that cannot hold the ERM run of the fixture data."""
    def build(tmp, mp):
        runs_root = tmp / "runs"
        if kind == "root is a file":
            runs_root.write_text("")
        elif kind == "kind dir is a file":
            runs_root.mkdir()
            (runs_root / "erm").write_text("")
        elif kind == "run dir is a file":
            config = erm.default_config("waterbirds", "smoke", data_root=str(tmp / "none"))
            (runs_root / "erm").mkdir(parents=True)
            (runs_root / "erm" / runs.run_id("erm", config)).write_text("")
        elif kind == "cannot be created":
            runs_root = Path("/proc/repro-store")
        elif kind == "not writable":  # simulated: the tests may run as root, for whom every folder is writable
            runs_root.mkdir()
            mp.setattr(runs.os, "access", lambda path, mode: False)
        mp.setenv("REPRO_RUNS", str(runs_root))
        return ["run", "erm", "--dataset", "waterbirds", "--profile", "smoke", "--set", f"data_root={tmp / 'none'}"]
    return build


def _targz(members) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, link in members:
            info = tarfile.TarInfo(name)
            if link:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            else:
                info.size = 1
                tar.addfile(info, io.BytesIO(b"x"))
    return buf.getvalue()


def fetching(name: str, served: dict | None, sources: list | None = None):
    """`repro data download NAME` against in-memory URLs (None: no network at all)."""
    def build(tmp, mp):
        def urlopen(url, timeout=None):
            if served is None or url not in served:
                raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
            return io.BytesIO(served[url])
        mp.setattr(urllib.request, "urlopen", urlopen)
        if sources is not None:
            mp.setitem(datasets.REGISTRY, name, dataclasses.replace(datasets.get(name), sources=tuple(sources)))
        return ["data", "download", name, "--root", str(tmp / "real")]
    return build


def environ(name: str, value: str | None = None):
    """`repro runs verify` (which reads no REPRO_* variable but the store's) with one variable set (a file if None)."""
    def build(tmp, mp):
        (tmp / "afile").write_text("")
        mp.setenv(name, str(tmp / "afile") if value is None else value)
        return ["runs", "verify", "--store", str(tmp / "nothing")]
    return build


def _bomb() -> str:
    """A YAML flow list holding an alias bomb: nine levels of nine aliases each, 9^9 leaves once expanded."""
    levels = [f"&a0 [{', '.join(['1'] * 9)}]"] + [f"&a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    return f"[{', '.join(levels)}, *a8]"


def big_params(section: str, text):
    """params(), the text made when the case runs (a large file)."""
    def build(tmp, mp):
        return params(section, text())(tmp, mp)
    return build


def a_file(*words):
    def build(tmp, mp):
        (tmp / "afile").write_text("")
        return [w.replace("{file}", str(tmp / "afile")) for w in words]
    return build


# ------------------------------------------------------------------------------------------ the catalogue

CASES = {
    # params files (validated before any notebook runs)
    "params: list of strings": (params("margins", "seeds: ['1']\ndata_root: d\n"), ["margins.yml", "'seeds'", "int"]),
    "params: empty grid": (params("margins", "seeds: []\n"), ["margins.yml", "'seeds'", "non-empty"]),
    "params: negative gamma": (params("class_balance", "gammas: [-1.0]\n"), ["class_balance.yml", "'gammas'", ">= 0"]),
    "params: negative workers": (params("margins", "workers: -1\n"), ["margins.yml", "'workers'", ">= 1"]),
    "params: bool as workers": (params("margins", "workers: true\n"), ["margins.yml", "'workers'", "int"]),
    "params: empty file": (params("margins", ""), ["margins.yml", "is empty"]),
    "params: comments only": (params("margins", "# nothing here\n"), ["margins.yml", "is empty"]),
    "params: unknown key": (params("margins", "sedes: [1]\n"), ["margins.yml", "unknown key 'sedes'", "allowed keys"]),
    "params: scalar for a list": (params("margins", "seeds: 1\n"), ["margins.yml", "'seeds'", "list"]),
    "params: invalid YAML": (params("margins", "seeds: [1\n"), ["margins.yml", "not valid YAML", "line"]),
    "params: missing file": (params("margins", None), ["missing params file", "margins.yml"]),
    "params: ratio above 1": (params("group_ratio", "ratios: [1.5]\n"), ["group_ratio.yml", "'ratios'", "(0, 1]"]),
    "params: unknown dataset": (params("margins", "datasets: [imagenet]\n"), ["'datasets'", "waterbirds", "imagenet"]),
    "params: unknown executor": (params("margins", "executor: cluster\n"), ["'executor'", "local or slurm"]),
    "params: a list, not a mapping": (params("margins", "- 1\n- 2\n"), ["margins.yml", "mapping"]),
    "params: one SVM point": (params("margins", "svm_points: 1\n"), ["'svm_points'", ">= 2"]),
    "params: zero epoch factor": (params("neural_collapse", "epoch_factor: 0\n"), ["'epoch_factor'", "> 0"]),
    "params: float LLR seed": (params("margins", "llr_seeds: [1.5]\n"), ["'llr_seeds'", "int", "1.5"]),
    "params: unknown synth profile": (params("margins", "synth_profile: huge\n"), ["'synth_profile'", "huge"]),
    "params: override of an unknown dataset": (params("margins", "model_overrides: {imagenet: resnet18}\n"),
                                               ["'model_overrides'", "imagenet"]),
    "params: probability above 1": (params("hypothesis", "p_major: 1.5\n"), ["hypothesis.yml", "'p_major'"]),
    "book: unknown notebook": (params("margins", "seeds: [1]\n", "--only", "nosuch"), ["unknown notebook", "nosuch"]),
    # --set and the ERM config (validated before any data are read)
    "set: batch_size=0": (sets("batch_size=0"), ["'batch_size'", ">= 1", "got 0"]),
    "set: unparsable YAML": (sets("seed=[1"), ["seed=[1", "not a YAML literal"]),
    "set: seed=abc": (sets("seed=abc"), ["'seed'", "integer", "'abc'"]),
    "set: lr=-1": (sets("lr=-1"), ["'lr'", "> 0", "-1"]),
    "set: epochs=0": (sets("epochs=0"), ["'epochs'", ">= 1"]),
    "set: weight_decay<0": (sets("weight_decay=-0.1"), ["'weight_decay'", ">= 0"]),
    "set: unknown key": (sets("nosuchkey=1"), ["unknown ERM config key", "nosuchkey"]),
    "set: no equals sign": (sets("seed"), ["KEY=VALUE", "'seed'"]),
    "set: unknown optimizer": (sets("optimizer=adam"), ["'optimizer'", "adam", "adamw"]),
    "set: group_ratio=2": (sets("group_ratio=2"), ["'group_ratio'", "(0, 1]"]),
    "set: save epoch past the end": (sets("save_epochs=[99]"), ["'save_epochs'", "99"]),
    "set: augment=maybe": (sets("augment=maybe"), ["'augment'", "maybe"]),
    "set: precision=fp8": (sets("precision=fp8"), ["precision", "fp8"]),
    "set: image_size=0": (sets("image_size=0"), ["'image_size'", ">= 1"]),
    "set: unknown model": (sets("model=resnet9000"), ["'model'", "resnet9000"]),
    "set: lr=true": (sets("lr=true"), ["'lr'", "True"]),
    # command-line options
    "option: unknown dataset": (argv("run", "erm", "--dataset", "imagenet"), ["invalid choice", "imagenet"]),
    "option: unknown profile": (argv("book", "--profile", "huge"), ["invalid choice", "huge"]),
    "option: unknown scale": (argv("data", "synth", "waterbirds", "--root", "{tmp}/d", "--scale", "huge"),
                              ["unknown scale 'huge'"]),
    # data files
    "data: truncated gzip": (data_file(lambda r: _truncate(r / CELEBA_ATTR)),
                             ["list_attr_celeba.txt.gz", "truncated or corrupt gzip"]),
    "data: empty CSV": (data_file(lambda r: (r / WB_META).write_bytes(b"")), ["metadata.csv", "empty"]),
    "data: non-UTF-8 CivilComments": (data_file(_replace(CIVIL, b"fine man", b"fin\xe9 man")),
                                      ["all_data_with_identities.csv", "not UTF-8", "line 2"]),
    "data: CelebA row cut short": (data_file(lambda r: _gz_lines(r / CELEBA_ATTR, lambda ls: ls[:3] + [ls[3][:20]] + ls[4:])),
                                   ["list_attr_celeba.txt.gz", "line 4", "fields"]),
    "data: CelebA count line wrong": (data_file(lambda r: _gz_lines(r / CELEBA_ATTR, lambda ls: [b"999"] + ls[1:])),
                                      ["list_attr_celeba.txt.gz", "999"]),
    "data: CelebA partitions disagree": (data_file(lambda r: _gz_lines(r / CELEBA_PART, lambda ls: [ls[0].replace(b"000001", b"999999")] + ls[1:])),
                                         ["list_eval_partition.txt.gz", "different images"]),
    "data: column missing": (data_file(_replace(WB_META, b",place,", b",plaice,")), ["metadata.csv", "'place'", "replace"]),
    "data: label out of range": (data_file(_replace(WB_META, b".jpg,1,2,1,", b".jpg,7,2,1,")),
                                 ["metadata.csv", "'y'", "7"]),
    "data: extra CSV field": (data_file(lambda r: (r / MNLI).write_bytes((r / MNLI).read_bytes() + b"9,1,0,0,5,6\n")),
                              ["metadata_random.csv", "cannot parse"]),
    "data: unknown CivilComments split": (data_file(_replace(CIVIL, b",train,", b",dev,")),
                                          ["all_data_with_identities.csv", "'split'", "dev"]),
    "data: truncated MultiNLI features": (data_file(lambda r: _truncate(r / "multinli/cached_train_bert-base-uncased_128_mnli"),
                                                    ("run", "multinli")),
                                          ["cached_train_bert-base-uncased_128_mnli", "truncated"]),
    "data: a file as data root": (a_file("data", "table", "--root", "{file}"), ["afile", "is a file, not a folder"]),
    # images (checked when the dataset is loaded, before training)
    "image: text as JPEG": (data_file(lambda r: (r / JPEG).write_text("not an image"), ("run", "waterbirds")),
                            ["Black_Footed_Albatross_0009_34.jpg", "not a JPEG"]),
    "image: zero bytes": (data_file(lambda r: (r / JPEG).write_bytes(b""), ("run", "waterbirds")),
                          ["Black_Footed_Albatross_0009_34.jpg", "0 bytes"]),
    "image: truncated JPEG": (data_file(lambda r: _truncate(r / JPEG, 0.6), ("run", "waterbirds")),
                              ["Black_Footed_Albatross_0009_34.jpg", "truncated JPEG"]),
    "image: missing JPEG": (data_file(lambda r: (r / JPEG).unlink(), ("run", "waterbirds")),
                            ["Black_Footed_Albatross_0009_34.jpg", "missing"]),
    # the run store (checked before any training)
    "store: root is a file": (store("root is a file"), ["runs", "is a file where a folder should be"]),
    "store: kind folder is a file": (store("kind dir is a file"), ["erm", "is a file where a folder should be"]),
    "store: run folder is a file": (store("run dir is a file"), ["is a file where the folder of run erm/", "--fix"]),
    "store: cannot be created": (store("cannot be created"), ["/proc/repro-store", "cannot be created"]),
    "store: not writable": (store("not writable"), ["runs/erm", "is not writable"]),
    "verify: store is a file": (a_file("runs", "verify", "--store", "{file}"), ["no run store", "afile", "is a file"]),
    "verify: no store": (argv("runs", "verify", "--store", "{tmp}/nothing"), ["no run store", "nothing"]),
    # synth and download
    "synth: root is a file": (a_file("data", "synth", "waterbirds", "--root", "{file}", "--scale", "smoke"),
                              ["afile", "is a file, not a folder"]),
    "download: root is a file": (a_file("data", "download", "waterbirds", "--root", "{file}"),
                                 ["afile", "is a file, not a folder"]),
    "download: no network": (fetching("celeba", None), ["list_attr_celeba.txt", "by hand", "drive.google.com"]),
    "download: member leaves the folder": (fetching("multinli", {"http://x/a": _targz([("../evil", None)])},
                                                    [dict(name="a.tar.gz", url="http://x/a", unpack=True)]),
                                           ["refused member '../evil'", "leaves the target folder"]),
    "download: absolute link in archive": (fetching("multinli", {"http://x/a": _targz([("evil", "/etc/passwd")])},
                                                    [dict(name="a.tar.gz", url="http://x/a", unpack=True)]),
                                           ["refused member 'evil'", "link to an absolute path"]),
    "download: truncated archive": (fetching("multinli", {"http://x/a": _targz([("ok", None)])[:30]},
                                             [dict(name="a.tar.gz", url="http://x/a", unpack=True)]),
                                    ["a.tar.gz", "truncated or corrupt archive"]),
    "device: unknown name": (argv("run", "erm", "--dataset", "waterbirds", "--device", "gpu"),
                             ["unknown device 'gpu'", "auto, cpu, cuda, mps"]),
    "device: bad variable": (lambda tmp, mp: (mp.setenv("REPRO_DEVICE", "cuda:x"), ["book", "--dry-run"])[1],
                             ["unknown device 'cuda:x'", "REPRO_DEVICE"]),
    "rehearse: not the paper profile": (argv("book", "--profile", "smoke", "--rehearse"),
                                        ["--rehearse", "--profile paper", "'smoke'"]),
    "download: wrong checksum": (fetching("multinli", {"http://x/m": b"tampered"},
                                          [dict(name="m.csv", url="http://x/m", sha256="0" * 64)]),
                                 ["m.csv", "sha256", "by hand"]),
}


# Values that were unbounded (alias bombs, huge grids, inf, huge integers, long values) and REPRO_* variables (all
# checked at start-up, whatever the command): each line is also at most BOUNDED_LINE_MAX characters.
BOUNDED = {
    "params: YAML alias bomb": (params("margins", f"seeds: {_bomb()}\n"), ["margins.yml", "line 1", "alias"]),
    "params: alias bomb under slurm": (params("margins", f"executor: slurm\nslurm: {{partition: {_bomb()}}}\n"),
                                       ["margins.yml", "line 2", "alias"]),
    "params: repeated key": (params("margins", "seeds: [1]\ndata_root: d\nseeds: [2]\n"),
                             ["margins.yml", "'seeds'", "twice at lines 1 and 3"]),
    "params: a million seeds": (big_params("margins", lambda: f"seeds: {list(range(10**6))}\n"),
                                ["margins.yml", "MiB", "shorten"]),
    "params: grid above the bound": (params("margins", f"seeds: {list(range(1000))}\n"),
                                     ["margins.yml", "12,000 combinations", "1,000 seeds", "--yes"]),
    "params: unknown slurm option": (params("margins", "slurm: {gpu: 1}\n"), ["'slurm'", "unknown slurm option 'gpu'"]),
    "params: negative slurm GPUs": (params("margins", "slurm: {gpus_per_node: -1}\n"),
                                    ["'slurm'", "'gpus_per_node'", ">= 0", "-1"]),
    "params: slurm time as text": (params("margins", "slurm: {timeout_min: soon}\n"), ["'timeout_min'", "'soon'"]),
    "params: slurm not a mapping": (params("margins", "slurm: [1]\n"), ["'slurm'", "dict"]),
    "params: infinite epoch factor": (params("neural_collapse", "epoch_factor: .inf\n"),
                                      ["neural_collapse.yml", "'epoch_factor'", "a finite number", "inf"]),
    "params: infinite gamma": (params("class_balance", "gammas: [0.0, .inf]\n"), ["class_balance.yml", "'gammas'", "finite"]),
    "params: infinite SVM factor": (params("margins", "svm_factor: .inf\n"), ["margins.yml", "'svm_factor'", "finite"]),
    "params: huge seed": (params("margins", f"seeds: [{10**30}]\n"), ["margins.yml", "'seeds'", "2147483647"]),
    "params: unknown device": (params("margins", "device: gpu\n"), ["margins.yml", "'device'", "'gpu'"]),
    "params: zero DFR resamples": (params("appendix_a", "dfr_resamples: 0\n"), ["appendix_a.yml", "'dfr_resamples'"]),
    "params: unknown model in an override": (params("margins", "model_overrides: {waterbirds: resnet9000}\n"),
                                             ["'model_overrides'", "resnet9000"]),
    "params: empty data folder": (params("margins", "data_root: ''\n"), ["margins.yml", "'data_root'", "folder"]),
    "params: a billion toy examples": (params("hypothesis", "n_train: 1000000000\n"), ["hypothesis.yml", "'n_train'"]),
    "params: a long value is quoted briefly": (params("margins", f"datasets: [{'x' * 100_000}]\n"),
                                               ["margins.yml", "'datasets'", "xxx..."]),
    "set: huge seed": (sets(f"seed={10**30}"), ["'seed'", "2147483647"]),
    "set: huge image size": (sets(f"image_size={2**40}"), ["'image_size'", "2147483647"]),
    "set: an alias": (sets("model_kw={a: &x [1], b: *x}"), ["--set", "model_kw", "alias"]),
    "set: a repeated key": (sets("model_kw={a: 1, a: 2}"), ["--set", "model_kw", "'a' appears twice on line 1"]),
    "set: a long value is quoted briefly": (sets(f"optimizer={'y' * 100_000}"), ["'optimizer'", "yyy..."]),
    "set: a run of 86,257 hours": (sets(f"epochs={2**31 - 1}"), ["this run is estimated at", "hours", "--yes"]),
    "params: runs of 416,000 hours": (only_section("neural_collapse", "datasets: [multinli]\nepoch_factor: 1.0e+9\n"),
                                     ["missing runs of neural_collapse are estimated at", "hours", "--yes"]),
    "option: long device name": (argv("run", "erm", "--dataset", "waterbirds", "--device", "z" * 100_000),
                                 ["unknown device", "zzz..."]),
    "env: exotic digit": (environ("REPRO_THREADS", "\u00b2"), ["REPRO_THREADS='\u00b2'", "digits 0-9"]),
    "env: huge thread count": (environ("REPRO_THREADS", "1" * 40), ["REPRO_THREADS", "1..1024"]),
    "env: loader workers not a number": (environ("REPRO_LOADER_WORKERS", "abc"), ["REPRO_LOADER_WORKERS='abc'"]),
    "env: deterministic neither 0 nor 1": (environ("REPRO_DETERMINISTIC", "yes"), ["REPRO_DETERMINISTIC", "0 or 1"]),
    "env: progress neither 0 nor 1": (environ("REPRO_PROGRESS", "off"), ["REPRO_PROGRESS", "0 or 1"]),
    "env: pixel cache neither 0 nor 1": (environ("REPRO_PIXEL_CACHE", "on"), ["REPRO_PIXEL_CACHE='on'", "0 or 1"]),
    "env: unknown device": (environ("REPRO_DEVICE", "tpu"), ["REPRO_DEVICE", "'tpu'"]),
    "env: data folder is a file": (environ("REPRO_DATA"), ["REPRO_DATA", "afile", "is a file"]),
    "env: no such browser": (environ("REPRO_CHROMIUM", "/nonexistent/chromium"), ["REPRO_CHROMIUM", "not an executable"]),
    "env: unknown variable": (environ("REPRO_TREADS", "4"), ["REPRO_TREADS", "did you mean REPRO_THREADS"]),
}
CASES.update(BOUNDED)


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_input_is_one_line_and_exit_2(case, tmp_path, monkeypatch, capsys):
    build, words = CASES[case]
    args = build(tmp_path, monkeypatch)
    capsys.readouterr()
    start = time.monotonic()
    try:
        code = cli.main(args)
    except SystemExit as exit_:  # argparse
        code = exit_.code
    seconds = time.monotonic() - start
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err[:2000]
    assert len(lines) == 1 and "Traceback" not in err, err[:2000]
    assert "error:" in lines[0]
    assert len(lines[0]) <= (BOUNDED_LINE_MAX if case in BOUNDED else LINE_MAX), f"{len(lines[0])}: {lines[0][:2000]}"
    assert seconds < SECONDS_MAX, f"{seconds:.0f} s"  # loose: bounded work; an alias bomb took 80 s
    missing = [w for w in words if w not in lines[0]]
    assert not missing, f"{missing} not in: {lines[0]}"


def test_the_catalogue_holds_at_least_40_bad_inputs():
    assert len(CASES) >= 40


def test_dry_run_on_a_fresh_clone_lists_missing_twins_and_estimates_from_twin_sizes(tmp_path, monkeypatch, capsys):
    from repro import plan

    monkeypatch.chdir(tmp_path)  # no data/synth/smoke here
    monkeypatch.setenv("REPRO_RUNS", str(tmp_path / "runs"))
    assert cli.main(["book", "--profile", "smoke", "--dry-run"]) == 0
    out = capsys.readouterr().out
    missing = out.split("Missing:")[1]
    assert "the waterbirds twin is not yet under data/synth/smoke" in missing and "repro data synth" in missing
    hours = float(out.split("estimated compute for the missing runs: ")[1].split()[0])
    assert hours <= 0.2  # the smoke book trains in about a minute; real dataset sizes gave hours
    assert plan.train_size("waterbirds", "smoke") < datasets.get("waterbirds").n_train / 10


def test_every_repro_variable_the_package_reads_is_checked_at_start_up():
    import re

    read = set()
    for path in (REPO / "src" / "repro").rglob("*.py"):
        read |= set(re.findall(r"\bREPRO_[A-Z_]*[A-Z]\b", path.read_text()))
    assert read == set(cli.ENVIRONMENT), "add a variable the package reads to repro.cli.ENVIRONMENT, with its check"


def test_a_grid_above_the_bound_runs_with_yes_and_the_paper_grids_are_far_below_it(tmp_path, monkeypatch):
    params("margins", f"seeds: {list(range(1000))}\n")(tmp_path, monkeypatch)
    root = tmp_path / "repo"
    with pytest.raises(book.BookError, match="--yes"):
        book.load_params(root, "margins", "smoke")
    assert len(book.load_params(root, "margins", "smoke", yes=True)["seeds"]) == 1000
    for name in book.notebooks(REPO):
        values = {**book.template_parameters(REPO / "book" / f"{name}.ipynb"), **book.load_params(REPO, name, "paper")}
        grid = math.prod(len(v) for k, v in values.items() if isinstance(v, list))
        # the companions page multiplies two sections' lists (ratios x gammas: 150), which no single grid does
        assert grid * (50 if name == "companions" else 100) <= book.GRID_MAX, name


def test_every_yaml_the_book_reads_refuses_repeated_keys(tmp_path):
    (tmp_path / "_toc.yml").write_text("root: intro\nchapters: []\nroot: other\n")
    with pytest.raises(ValueError, match=r"_toc.yml: line 3: key 'root' appears twice at lines 1 and 3"):
        book.toc_entries(tmp_path)


def test_a_quoted_value_is_short_however_large_the_value():
    from repro import files

    start = time.monotonic()
    for value in (list(range(10**6)), "x" * 10**6, 10**300, {str(k): [k] * 10 for k in range(10**5)}, [[[[[1]]]]] * 10**5):
        assert len(files.quote(value)) <= files.QUOTE_CHARS
    assert time.monotonic() - start < 10
