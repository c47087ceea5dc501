"""The parameters of the section templates, in the two places they are set: params files and papermill.

Each params/<profile>/<name>.yml lists every parameter of book/<name>.ipynb's `parameters` cell, in its order:
the keys the profile sets as YAML lines, the others as comments `# key: <default>  # meaning`. Defaults and
meanings have one source, the template's parameters cell (a value, then `# meaning`, as papermill's
inspect_notebook reads it); `listing` writes a file from it and `problems` says where a file disagrees
(`repro params --write` rewrites them all). Free comment lines of a params file (a note on the cluster) are kept
after the header.

`check_kernel` is the same check on the other path, inside a notebook that papermill or Jupyter runs directly:
a parameter that the template lacks or a value of the wrong type stops the page's first code cell with one
line saying how to pass it under the runner at hand.
"""
from __future__ import annotations

import ast
import math
import re
from pathlib import Path

import yaml

from repro import book, files

HEADER = ("# Every parameter of book/{name}.ipynb: set lines are this profile's values, commented lines the template's\n"
          "# defaults (uncomment one to set it). After editing the template's parameters cell: repro params --write\n")
_LINE = re.compile(r"^(# )?([A-Za-z_]\w*): (.*)$")  # a listing line: set, or commented out
_INJECTED = "# Parameters\n"  # the first line of papermill's injected-parameters cell


class ParameterError(ValueError):
    """A bad parameter of a notebook run directly; Jupyter shows it as its one line, without a traceback."""

    def _render_traceback_(self):  # IPython's hook: the lines shown in place of a traceback
        return [str(self)]


def template(path: Path) -> dict[str, tuple]:
    """Name -> (default, meaning) of a template's `parameters` cell, in cell order, without the runner's keys
    (book.RUNNER_KEYS). BookError naming the cell when a parameter has no `# meaning` comment."""
    import papermill

    found = papermill.inspect_notebook(str(path))
    if not found:
        raise book.BookError(f"{path}: no cell tagged 'parameters'; tag the cell of literals with 'parameters'")
    out = {}
    for name, spec in found.items():
        if name in book.RUNNER_KEYS:
            continue
        if not spec.get("help", "").strip():
            raise book.BookError(f"{path.name}: parameter {name!r} has no meaning; write `  # what it sets` after "
                                 f"its value in the parameters cell")
        out[name] = (ast.literal_eval(spec["default"]), spec["help"].strip())
    return out


def yaml_value(value) -> str:
    """`value` as one line of YAML (flow style for lists and mappings)."""
    return yaml.safe_dump([value], default_flow_style=True, sort_keys=False, width=math.inf,
                          allow_unicode=True).strip()[1:-1]


def _notes(text: str, name: str) -> list[str]:
    """The free comment lines of a params file: neither its header nor a listing line."""
    header = HEADER.format(name=name).splitlines()
    return [line for line in text.splitlines() if line.startswith("#") and not _LINE.match(line)
            and line not in header]


def listing(root: Path, name: str, profile: str) -> str:
    """The text of params/<profile>/<name>.yml: header, free notes, then one line per template parameter."""
    spec = template(root / "book" / f"{name}.ipynb")
    values = book.load_params(root, name, profile, yes=True)  # the keys it may set, their types and ranges
    path = root / "params" / profile / f"{name}.yml"
    lines = [*HEADER.format(name=name).splitlines(), *_notes(path.read_text(), name)]
    for key, (default, meaning) in spec.items():
        shown = f"{key}: {yaml_value(values[key] if key in values else default)}"
        lines.append(f"{'' if key in values else '# '}{shown}  # {meaning}")
    return "\n".join(lines) + "\n"


def _listed(text: str) -> dict[str, list[tuple[bool, str]]]:
    """Key -> [(set, value text)] of the listing lines of a params file (one each, unless listed twice)."""
    out = {}
    for line in text.splitlines():
        match = _LINE.match(line)
        if match:
            value = re.split(r"\s+#\s", match[3], maxsplit=1)[0].strip()
            out.setdefault(match[2], []).append((match[1] is None, value))
    return out


def file_problem(root: Path, name: str, profile: str) -> str | None:
    """Why params/<profile>/<name>.yml disagrees with its template's parameters cell, else None."""
    path = root / "params" / profile / f"{name}.yml"
    where = path.relative_to(root)
    spec = template(root / "book" / f"{name}.ipynb")
    text = path.read_text() if path.is_file() else ""
    listed = _listed(text)
    for key in spec:
        if key not in listed:
            return f"{where} does not list {key!r}, a parameter of book/{name}.ipynb"
    for key, lines in listed.items():
        if key not in spec:
            return f"{where} lists {key!r}, which book/{name}.ipynb does not define"
        if len(lines) > 1:
            return f"{where} lists {key!r} {len(lines)} times"
        (is_set, value), shown = lines[0], yaml_value(spec[key][0])
        if not is_set and value != shown:
            return f"{where} shows {key}: {value} as the default, the template's is {shown}"
    if text != listing(root, name, profile):
        return f"{where} differs from its listing (order, meanings or layout)"
    return None


def problems(root: Path) -> list[str]:
    """One line per params file of every profile and TOC notebook that disagrees with its template."""
    found = []
    for profile in book.PROFILES:
        for name in book.notebooks(root):
            try:
                problem = file_problem(root, name, profile)
            except book.BookError as err:
                problem = str(err)
            if problem:
                found.append(f"{problem}; fix with: repro params --write")
    return found


def write(root: Path) -> list[Path]:
    """Rewrite every params file whose text differs from its listing; return the paths written."""
    written = []
    for profile in book.PROFILES:
        for name in book.notebooks(root):
            path = root / "params" / profile / f"{name}.yml"
            text = listing(root, name, profile)
            if not path.is_file() or path.read_text() != text:
                path.write_text(text)
                written.append(path)
    return written


def _injected(history) -> set[str]:
    """The names that papermill's injected-parameters cell assigns (the last one run, in the kernel's input
    history `In`); empty when papermill injected nothing."""
    cells = [cell for cell in history if isinstance(cell, str) and cell.startswith(_INJECTED)]
    if not cells:
        return set()
    tree = ast.parse(cells[-1])
    return {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
            if isinstance(t, ast.Name)}


def how_to_pass(runner: str, name: str, profile: str, key: str = "", value=None) -> str:
    """The end of a parameter error: how to set a parameter under `runner` ("repro", "papermill" or
    "jupyter"), with the YAML option when papermill's -p made a string of a list or a mapping."""
    if runner == "repro":
        return f"set it in params/{profile}/{name}.yml (repro book checks that file before any notebook runs)"
    if runner == "jupyter":
        return "edit the parameters cell"
    if key and isinstance(value, str) and value[:1] in "[{":
        return f"papermill -p passes a string or a number: pass YAML with -y \"{key}: {value}\""
    return (f"papermill -p NAME VALUE, or -y for YAML values such as lists; papermill --help-notebook "
            f"book/{name}.ipynb shows each parameter's meaning")


def check_kernel(name: str, namespace: dict, root: Path) -> None:
    """In the kernel of notebook book/<name>.ipynb (`namespace`: its globals, with IPython's input history `In`):
    ParameterError (one line) unless every name papermill injected is a parameter of the template and, unless
    `repro book` runs it (it checked the params file the same way before), every parameter holds a value of the
    template's type and range (book.check_param)."""
    path = root / "book" / f"{name}.ipynb"
    if not path.is_file():
        return  # a copy outside a checkout: nothing to compare with
    defaults = book.template_parameters(path)
    injected = _injected(namespace.get("In", ()))
    runner = "repro" if namespace.get("params_yaml") else "papermill" if injected else "jupyter"
    profile = namespace.get("profile", "")
    unknown = sorted(injected - set(defaults))
    if unknown:
        raise ParameterError(f"error: parameter {unknown[0]!r} is not a parameter of {name}.ipynb; valid: "
                             f"{', '.join(k for k in defaults if k not in book.RUNNER_KEYS)} "
                             f"({how_to_pass(runner, name, profile)})")
    if runner == "repro":
        return  # its values were checked in the params file (a rehearsal's are repro.rehearse's own)
    if profile not in book.PROFILES:
        raise ParameterError(f"error: parameter 'profile' of {name}.ipynb must be one of {', '.join(book.PROFILES)}, "
                             f"got {files.quote(profile)}; {how_to_pass(runner, name, profile)}")
    for key, default in defaults.items():
        if key in book.RUNNER_KEYS or key not in namespace:
            continue
        try:
            book.check_param(f"{name}.ipynb", key, default, namespace[key])
        except book.BookError as err:
            problem = str(err).split(f"key {key!r} ", 1)[1]  # "must be ..., got ..."
            raise ParameterError(f"error: parameter {key!r} of {name}.ipynb {problem}; "
                                 f"{how_to_pass(runner, name, profile, key, namespace[key])}") from None
