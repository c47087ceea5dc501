"""Reading and checking data files: gzip-transparent opening, parse errors that name the file and line, images,
YAML read as data (no aliases, no repeated keys, bounded size), and values quoted briefly in error lines."""
from __future__ import annotations

import gzip
import io
import reprlib
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

MAX_INT = 2**31 - 1  # the largest integer a params value, option or config key may hold (seeds, counts, sizes)
QUOTE_CHARS = 200  # an error line quotes at most this much of a value
YAML_MAX_BYTES = 1 << 20  # a params or configuration file holds a few literals; this is far above any of ours

_QUOTE = reprlib.Repr()
_QUOTE.maxlevel, _QUOTE.maxlist, _QUOTE.maxtuple, _QUOTE.maxdict, _QUOTE.maxset = 3, 8, 8, 8, 8
_QUOTE.maxstring, _QUOTE.maxother, _QUOTE.maxlong = 120, 120, 40


def quote(value, limit: int = QUOTE_CHARS) -> str:
    """repr(value) for an error line, at most `limit` characters: long lists, mappings, strings and integers are
    elided in the middle (reprlib), without ever writing out the whole value."""
    text = _QUOTE.repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def is_tree(folder: Path) -> bool:
    """Whether `folder` is a checkout of the repository (a book tree): _config.yml, _toc.yml, book/ and params/."""
    return all((folder / name).is_file() for name in ("_config.yml", "_toc.yml")) and \
        all((folder / name).is_dir() for name in ("book", "params"))


def package_tree() -> Path | None:
    """The checkout the package is imported from (an editable install), if it is a book tree."""
    return next((folder for folder in Path(__file__).resolve().parents if is_tree(folder)), None)


def find_tree(start: Path | None = None) -> Path | None:
    """The nearest book tree at or above `start` (default: the current directory), else package_tree()."""
    here = Path(start or Path.cwd()).resolve()
    return next((folder for folder in (here, *here.parents) if is_tree(folder)), None) or package_tree()


class YAMLDataError(ValueError):
    """YAML text that is not plain data: a syntax error, an alias, a repeated key. str() is the problem;
    `line` its 1-based line, where known."""

    def __init__(self, problem: str, line: int | None = None):
        super().__init__(problem if line is None else f"line {line}: {problem}")
        self.problem, self.line = problem, line


class _DataLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """yaml's safe loader that refuses an alias (a value repeated by reference: `*name`, whose expansion can be
    exponentially large) and a key repeated in one mapping (YAML requires unique keys; yaml keeps the last)."""

    def construct_object(self, node, deep=False):
        if node in self.constructed_objects or node in self.recursive_objects:  # reached a second time: an alias
            raise YAMLDataError("an alias (*name) repeats the value anchored (&name) here; write the value out "
                                "(this YAML is read as data: no anchors or aliases)", node.start_mark.line + 1)
        return super().construct_object(node, deep)

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key = (key_node.tag, key_node.value)
                line = key_node.start_mark.line + 1
                if key in seen:
                    where = f"on line {line}" if seen[key] == line else f"at lines {seen[key]} and {line}"
                    raise YAMLDataError(f"key {quote(key_node.value)} appears twice {where}; keep one", line)
                seen[key] = line
        return super().construct_mapping(node, deep)


def load_yaml(text: str):
    """The data of a YAML document; YAMLDataError on a syntax error, an alias or a repeated key."""
    try:
        return yaml.load(text, Loader=_DataLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise YAMLDataError(f"not valid YAML ({getattr(err, 'problem', None) or type(err).__name__})",
                            None if mark is None else mark.line + 1) from None


def read_yaml(path, where=None):
    """The data of the YAML file `path` (load_yaml), refusing files over YAML_MAX_BYTES before reading them.
    Every failure is one ValueError that starts with `where` (default: the path)."""
    where = where or path
    try:
        size = Path(path).stat().st_size
        if size > YAML_MAX_BYTES:
            raise ValueError(f"{where}: {size / 2**20:.1f} MiB of YAML; a params or configuration file holds a few "
                             f"literals (at most {YAML_MAX_BYTES // 2**20} MiB): shorten its lists")
        return load_yaml(Path(path).read_text(encoding="utf-8"))
    except YAMLDataError as err:
        raise ValueError(f"{where}: {err}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{where}: cannot read it ({type(err).__name__}: {quote(str(err))})") from None


def fix(name: str, root) -> str:
    """How to get dataset `name` into data root `root`."""
    return (f"get it with `repro data download {name} --root {root}`, "
            f"or write a synthetic twin with `repro data synth --root {root}`")


def locate(folder, filename: str) -> Path | None:
    """The path of `filename` or `filename.gz` in `folder`, or None."""
    for candidate in (Path(folder) / filename, Path(folder) / (filename + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def required(folder: Path, filename: str, name: str) -> Path:
    path = locate(folder, filename)
    if path is None:
        raise FileNotFoundError(f"{name}: expected {folder / filename} (or .gz); {fix(name, folder.parent)}")
    return path


def open_bytes(path) -> io.BufferedIOBase:
    """Open a file for reading, decompressing it when it starts with the gzip magic bytes."""
    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def _first_bad_line(path, skip: int, fields: int | None) -> str:
    """ at line N" of the first line (after `skip`) that is not UTF-8 or, if `fields` is given, does not hold
    `fields` whitespace-separated fields; "" if none is found. Only called once a read has failed."""
    try:
        with open_bytes(path) as f:
            for number, line in enumerate(f, 1):
                if number <= skip or not line.strip():
                    continue
                text = line.decode("utf-8")
                if fields is not None and len(text.split()) != fields:
                    return f" at line {number} ({len(text.split())} fields, expected {fields})"
    except UnicodeDecodeError:
        return f" at line {number}"
    except (OSError, EOFError, zlib.error):
        pass
    return ""


@contextmanager
def reading(path, name: str, skip: int = 0, fields: int | None = None):
    """Turn any failure to parse `path` into one ValueError that names the file (and the line where known)."""
    how = f"replace the file: {fix(name, Path(path).parent.parent)}"
    try:
        yield
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise ValueError(f"{path}: truncated or corrupt gzip file ({err}); {how}") from None
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path}: the file is empty; {how}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text{_first_bad_line(path, 0, None)}; {how}") from None
    except (pd.errors.ParserError, ValueError, TypeError) as err:
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{path}: cannot parse{_first_bad_line(path, skip, fields)} ({detail}); {how}") from None


REPLACE = "replace the file (`repro data download NAME --root DIR`, or `repro data synth NAME --root DIR` for a twin)"


def columns(df: pd.DataFrame, names, path) -> None:
    missing = [c for c in names if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; found {list(df.columns)[:12]}; {REPLACE}")


def values(column_values, allowed, column: str, path) -> np.ndarray:
    values = np.asarray(column_values)
    bad = np.setdiff1d(np.unique(values), np.asarray(list(allowed)))
    if bad.size:
        raise ValueError(f"{path}: column {column!r} has values {bad[:10].tolist()} outside {sorted(allowed)}; "
                         f"{REPLACE}")
    return values.astype(np.int64)


def frame(inputs, y, a, split) -> pd.DataFrame:
    """The metadata frame every reader returns: columns input, y, a, split (int64)."""
    return pd.DataFrame({"input": inputs, "y": np.asarray(y, np.int64), "a": np.asarray(a, np.int64),
                         "split": np.asarray(split, np.int64)})


def check_files(paths, name: str) -> None:
    """Raise FileNotFoundError if any of the (n,) absolute image paths is missing (all are checked), and
    ValueError naming the first file that is empty, not a JPEG/PNG, or truncated (no end marker)."""
    import os
    from collections import defaultdict

    by_dir = defaultdict(list)
    for p in paths:
        d, f = os.path.split(p)
        by_dir[d].append(f)
    missing = []
    for d, files in by_dir.items():
        present = set(os.listdir(d)) if os.path.isdir(d) else set()
        missing += [os.path.join(d, f) for f in files if f not in present]
    if missing:
        raise FileNotFoundError(f"{name}: {len(missing)} of {len(paths)} image files are missing, e.g. "
                                f"{missing[:3]}; re-download with `repro data download {name} --root DIR` "
                                f"or write a twin with `repro data synth`")
    for p in paths:
        problem = image_problem(p)
        if problem:
            raise ValueError(f"{p}: {problem}; replace it (`repro data download {name} --root DIR`, or delete "
                             f"the dataset folder and rerun `repro data synth {name} --root DIR`)")


def image_problem(path) -> str | None:
    """Why the file at `path` is not a complete JPEG or PNG image (from its first and last bytes), or None."""
    with open(path, "rb") as f:
        head = f.read(8)
        if not head:
            return "empty file (0 bytes)"
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - 1024))
        tail = f.read()
    if head.startswith(b"\xff\xd8\xff"):
        return None if b"\xff\xd9" in tail else "truncated JPEG (no end-of-image marker)"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return None if b"IEND" in tail else "truncated PNG (no IEND chunk)"
    return f"not a JPEG or PNG image (it starts with {head[:8]!r})"
