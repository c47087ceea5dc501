"""repro.params: every params file lists its template's parameters (and says where it does not), and a notebook
run directly by papermill or Jupyter stops on a bad parameter with one line in that runner's terms."""
import json
import os
import subprocess
import sys

import pytest

from repro import book, params
from tests.conftest import REPO, SRC, copy_book_sources


def test_every_params_file_lists_every_parameter_of_its_template():
    assert params.problems(REPO) == []


@pytest.fixture
def tree(tmp_path):
    return copy_book_sources(tmp_path)


def _edit(path, old, new):
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def _set_default(root, name, line, new_line):
    """Edit a line of the parameters cell of book/<name>.ipynb."""
    path = root / "book" / f"{name}.ipynb"
    nb = json.loads(path.read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    cell["source"] = [new_line if s.startswith(line) else s for s in cell["source"]]
    path.write_text(json.dumps(nb, indent=1))


def test_a_params_file_that_disagrees_with_its_template_is_named_then_rewritten(tree):
    margins = tree / "params" / "smoke" / "margins.yml"
    _edit(margins, "# svm_points: 12  # log-spaced step counts recorded\n", "")
    assert params.file_problem(tree, "margins", "smoke") == \
        "params/smoke/margins.yml does not list 'svm_points', a parameter of book/margins.ipynb"
    _edit(tree / "params" / "smoke" / "class_balance.yml", "# device:", "# svm_pointz: 12  # old name\n# device:")
    assert params.file_problem(tree, "class_balance", "smoke") == \
        "params/smoke/class_balance.yml lists 'svm_pointz', which book/class_balance.ipynb does not define"
    _set_default(tree, "hypothesis", "noise = ", "noise = 0.5  # scale of the noise\n")  # stale in every profile
    assert params.file_problem(tree, "hypothesis", "cpu") == \
        "params/cpu/hypothesis.yml shows noise: 0.25 as the default, the template's is 0.5"
    _edit(tree / "params" / "cpu" / "appendix_b.yml", "# synth_seed: 0  # seed of", "# synth_seed: 0  # the seed of")
    assert params.file_problem(tree, "appendix_b", "cpu") == \
        "params/cpu/appendix_b.yml differs from its listing (order, meanings or layout)"
    found = params.problems(tree)
    assert len(found) == 6 and all(p.endswith("; fix with: repro params --write") for p in found)
    before = {p: book.load_params(tree, n, p) for p in book.PROFILES for n in book.notebooks(tree)}
    notes = (tree / "params" / "paper" / "margins.yml").read_text().count("#   slurm: {partition: gpu")
    assert len(params.write(tree)) == 6 and params.problems(tree) == []
    assert before == {p: book.load_params(tree, n, p) for p in book.PROFILES for n in book.notebooks(tree)}
    assert (tree / "params" / "paper" / "margins.yml").read_text().count("#   slurm: {partition: gpu") == notes == 1
    assert "# noise: 0.5  # scale of the noise\n" in (tree / "params" / "cpu" / "hypothesis.yml").read_text()


def test_repro_params_checks_then_writes(tree, monkeypatch, capsys):
    from repro import cli

    monkeypatch.chdir(tree / "book")  # the tree above the current folder
    assert cli.main(["params"]) == 0 and capsys.readouterr().out == ""
    _edit(tree / "params" / "smoke" / "hypothesis.yml", "# noise: 0.25", "# noise: 0.3")
    assert cli.main(["params"]) == 1
    assert capsys.readouterr().out == ("params/smoke/hypothesis.yml shows noise: 0.3 as the default, the template's "
                                       "is 0.25; fix with: repro params --write\n")
    assert cli.main(["params", "--write"]) == 0 and capsys.readouterr().out == "wrote params/smoke/hypothesis.yml\n"
    assert cli.main(["params"]) == 0


def test_a_set_key_the_template_lacks_is_still_an_error(tree):
    _edit(tree / "params" / "smoke" / "margins.yml", "seeds: [1]", "seedz: [1]")
    with pytest.raises(book.BookError, match="params/smoke/margins.yml: unknown key 'seedz'; allowed keys: "):
        params.listing(tree, "margins", "smoke")


def test_a_parameter_without_a_meaning_is_named(tree):
    _set_default(tree, "hypothesis", "noise = ", "noise = 0.25\n")
    assert params.problems(tree)[0].startswith("hypothesis.ipynb: parameter 'noise' has no meaning; write `  # ")


def test_yaml_values_are_one_line_and_read_back():
    import yaml

    for value in ["", "data/real", "a: b", [1, 2], {"waterbirds": "resnet18", "celeba": "x"}, {}, True, 10.0, None,
                  {"slurm": {"partition": "gpu"}}]:
        text = params.yaml_value(value)
        assert "\n" not in text and yaml.safe_load(f"k: {text}")["k"] == value, text
    assert params.yaml_value({"b": 1, "a": 2}) == "{b: 1, a: 2}"  # the order written


def _namespace(cell: str = "", **values) -> dict:
    """A kernel's globals after the parameters cell of margins (and papermill's injected `cell`, if any)."""
    defaults = book.template_parameters(REPO / "book" / "margins.ipynb")
    return {**defaults, **values, "In": ["", "profile = 'cpu'\n", *([cell] if cell else [])]}


def test_the_kernel_check_names_the_runner_s_way_to_pass_a_parameter():
    with pytest.raises(params.ParameterError) as err:
        params.check_kernel("margins", _namespace("# Parameters\nsvm_pointz = 6\n", svm_pointz=6), REPO)
    assert str(err.value).startswith("error: parameter 'svm_pointz' is not a parameter of margins.ipynb; valid: "
                                     "datasets, seeds, ") and "(papermill -p NAME VALUE, or -y for YAML" in str(err.value)
    assert err.value._render_traceback_() == [str(err.value)]  # Jupyter shows this one line
    with pytest.raises(params.ParameterError, match=r"^error: parameter 'seeds' of margins.ipynb must be list "
                                                    r"\(template default \[1, 2, 3\]\), got '\[1\]'; papermill -p "
                                                    r"passes a string or a number: pass YAML with -y \"seeds: \[1\]\"$"):
        params.check_kernel("margins", _namespace("# Parameters\nseeds = \"[1]\"\n", seeds="[1]"), REPO)
    repro = _namespace("# Parameters\nprofile = \"smoke\"\nparams_yaml = \"{}\"\nsvm_pointz = 6\n", profile="smoke",
                       params_yaml="{}\n", svm_pointz=6)
    with pytest.raises(params.ParameterError, match=r"\(set it in params/smoke/margins.yml \(repro book checks"):
        params.check_kernel("margins", repro, REPO)
    with pytest.raises(params.ParameterError, match=r"'svm_points' of margins.ipynb must be an integer >= 2 .*; "
                                                    r"edit the parameters cell$"):
        params.check_kernel("margins", _namespace(svm_points=1), REPO)
    with pytest.raises(params.ParameterError, match="'profile' of margins.ipynb must be one of smoke, cpu, paper"):
        params.check_kernel("margins", _namespace(profile="laptop"), REPO)
    params.check_kernel("margins", _namespace("# Parameters\nseeds = [1]\n", seeds=[1], user_var=3), REPO)


def test_every_template_names_itself_to_page_begin():
    for name in book.notebooks(REPO):
        cells = json.loads((REPO / "book" / f"{name}.ipynb").read_text())["cells"]
        begin = next("".join(c["source"]) for c in cells if "page.begin(" in "".join(c["source"]))
        assert f'notebook="{name}"' in begin, name


@pytest.mark.parametrize("option", [["-p", "svm_pointz", "6"], ["-p", "seeds", "[1]"]], ids=["unknown", "list"])
def test_papermill_stops_a_bad_parameter_in_the_first_code_cell_with_one_line(option, tmp_path):
    env = {**os.environ, "PYTHONPATH": SRC}
    out = subprocess.run([sys.executable, "-m", "papermill", "book/margins.ipynb", str(tmp_path / "out.ipynb"),
                          *option, "--no-progress-bar"], cwd=REPO, env=env, capture_output=True, text=True)
    assert out.returncode != 0
    tail = out.stderr.rstrip().splitlines()
    assert tail[-2] == 'Exception encountered at "In [3]":' and tail[-1].startswith("error: parameter "), tail[-3:]
    assert "papermill -p" in tail[-1] or "-y" in tail[-1]
    nb = json.loads((tmp_path / "out.ipynb").read_text())
    errors = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
              if o["output_type"] == "error"]
    assert len(errors) == 1 and errors[0]["traceback"] == [tail[-1]]
