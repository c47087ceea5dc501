"""The `repro` command line: --help everywhere, Table 2 from the real metadata, run erm twice, a full disk."""
import argparse
import errno
import io
import os
import subprocess
import sys
from contextlib import redirect_stdout

import pandas as pd
import pytest

from repro import cli, data

SUBCOMMANDS = [[], ["book"], ["data"], ["data", "table"], ["data", "synth"], ["data", "download"], ["run"], ["run", "erm"], ["params"]]


@pytest.mark.parametrize("words", SUBCOMMANDS, ids=lambda w: " ".join(w) or "repro")
def test_help_on_every_subcommand(words, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([*words, "--help"])
    assert exit_.value.code == 0 and "usage: repro" in capsys.readouterr().out


def _subparsers(p):
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield sub
                yield from _subparsers(sub)


def test_help_shows_every_default_and_book_and_run_erm_share_the_profile():
    p = cli.parser()
    for sub in _subparsers(p):
        text = " ".join(sub.format_help().split())
        for action in sub._actions:
            d = action.default
            if not (d is None or d is False or d == [] or d == argparse.SUPPRESS):
                assert f"(default: {action.default})" in text, (sub.prog, action.dest)
    defaults = {sub.prog: sub.get_default("profile") for sub in _subparsers(p) if sub.get_default("profile")}
    assert defaults == {"repro book": "cpu", "repro run erm": "cpu", "repro bench": "cpu"}


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "repro", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("repro ")


def test_data_table_csv_equals_paper_table2_on_real_metadata(real_root):
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        assert cli.main(["data", "table", "--root", str(real_root), "--format", "csv"]) == 0
    table = pd.read_csv(io.StringIO(buffer.getvalue()))
    assert list(table.columns) == ["dataset", "group", "y", "s", "p_y", "p_g", "p_y_given_s", "train", "val", "test"]
    paper = data.PAPER_TABLE2.copy()
    paper.loc[(paper.dataset == "waterbirds") & (paper.y == "landbird"), "test"] = 2255  # the paper's typo, fixed
    paper = paper[paper.dataset.isin(["waterbirds", "celeba", "multinli"])].reset_index(drop=True)
    assert set(table.dataset) == {"waterbirds", "celeba", "multinli"}
    merged = paper.merge(table, on=["dataset", "group"], suffixes=("_paper", ""))
    assert len(merged) == 14
    for col in ("train", "val", "test"):
        assert (merged[col] == merged[f"{col}_paper"]).all(), col
    for col in ("p_y", "p_g", "p_y_given_s"):
        assert (merged[col].round(3) - merged[f"{col}_paper"]).abs().max() < 1e-9, col


def test_data_table_defaults_to_the_vendored_metadata_and_says_why_civilcomments_is_left_out(real_root, capsys):
    assert cli.main(["data", "table"]) == 0
    default, err = capsys.readouterr()
    assert cli.main(["data", "table", "--root", str(real_root)]) == 0
    assert default == capsys.readouterr().out and default.count("\n") == 15  # header + 14 groups
    assert err.startswith("note: civilcomments is not in the table: the repository vendors no civilcomments "
                          "metadata (data/metadata/SOURCES.md says why); `repro data download civilcomments")
    assert err.count("\n") == 1


def test_data_table_on_an_empty_root_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["data", "table", "--root", str(tmp_path)]) == 2
    assert "repro data synth" in capsys.readouterr().err


def test_run_erm_twice_does_no_work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REPRO_RUNS", str(tmp_path / "runs"))
    first = subprocess.run([sys.executable, "-m", "repro", "run", "erm", "--dataset", "waterbirds", "--profile", "smoke"],
                           capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert first.stderr.splitlines()[-1].startswith("computed: the erm run of waterbirds (smoke profile) in ")
    path = first.stdout.strip().splitlines()[-1]
    assert (tmp_path / "runs" / "erm").is_dir() and path.startswith(str(tmp_path / "runs" / "erm"))
    stamp = (tmp_path / "runs" / "erm" / path.rsplit("/", 1)[1] / "done").stat().st_mtime_ns
    second = subprocess.run([sys.executable, "-m", "repro", "run", "erm", "--dataset", "waterbirds", "--profile", "smoke"],
                            capture_output=True, text=True)
    assert second.stdout.strip().splitlines()[-1] == path
    assert second.stderr.splitlines()[-1] == ("cached: the erm run of waterbirds (smoke profile) was in the run store; "
                                              "nothing computed")
    assert (tmp_path / "runs" / "erm" / path.rsplit("/", 1)[1] / "done").stat().st_mtime_ns == stamp


def test_data_synth_then_table_shows_table2_proportions(tmp_path, capsys):
    assert cli.main(["data", "synth", "waterbirds", "civilcomments", "--root", str(tmp_path), "--scale", "smoke"]) == 0
    capsys.readouterr()
    assert cli.main(["data", "table", "--root", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    table = pd.read_csv(io.StringIO(out))
    assert [line.split(":")[1] for line in err.splitlines()] == [" celeba is not in the table", " multinli is not in the table"]
    assert f"{tmp_path} holds no celeba metadata" in err
    paper = data.PAPER_TABLE2.merge(table, on=["dataset", "group"], suffixes=("_paper", ""))
    assert len(paper) == 8 and (paper["p_y"] - paper["p_y_paper"]).abs().max() < 0.02
    assert cli.main(["data", "synth", "waterbirds", "--root", str(tmp_path), "--scale", "huge"]) == 2
    assert "unknown scale 'huge'" in capsys.readouterr().err


def _full_disk_safetensors(*args, **kwargs):
    from safetensors import SafetensorError

    raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space '
                          'left on device" })')


def _full_disk_json(path, *args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


@pytest.mark.parametrize("writer", ["safetensors", "json"])
def test_a_full_disk_is_one_line_naming_the_folder_and_leaves_no_half_written_run(writer, tmp_path, monkeypatch,
                                                                                 capsys):
    """The disk fills while a run writes its checkpoint (safetensors' own error) or its first file (OSError
    ENOSPC): one line, exit 2, and the run store holds no temporary folder, lock or half-written run."""
    import safetensors.torch

    from repro import runs

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REPRO_RUNS", str(tmp_path / "runs"))
    if writer == "safetensors":
        monkeypatch.setattr(safetensors.torch, "save_file", _full_disk_safetensors)
        monkeypatch.setattr(safetensors.torch, "save_model", _full_disk_safetensors)
    else:
        monkeypatch.setattr(runs, "write_json", _full_disk_json)
    assert cli.main(["run", "erm", "--dataset", "waterbirds", "--profile", "smoke"]) == 2
    err = capsys.readouterr().err
    where = f"the run store {tmp_path / 'runs'} " if writer == "safetensors" else f"{tmp_path / 'runs' / 'erm'}:"
    assert err.count("\n") == 1 and err.startswith(f"error: no space left on device writing {where}") \
        and "MiB free there" in err and "REPRO_RUNS" in err, err
    assert list((tmp_path / "runs" / "erm").iterdir()) == []


def test_a_notebook_that_fills_the_disk_is_one_line(tmp_path, monkeypatch, capsys):
    from repro import book

    def full(*args, **kwargs):
        raise book.BookError("notebook 'margins' failed in cell 7: SafetensorError: Error while serializing: "
                             "IoError(Os { code: 28, kind: StorageFull, message: \"No space left on device\" })\n"
                             "partly executed notebook: _build/src/book/margins.partial.ipynb")

    monkeypatch.setattr(book, "build", full)
    monkeypatch.setenv("REPRO_RUNS", str(tmp_path / "runs"))
    assert cli.main(["book", "--profile", "smoke"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: no space left on device writing the run store {tmp_path}")


def test_book_prints_the_path_of_the_index_and_of_the_pdf_once(tmp_path, monkeypatch, capsys):
    """`repro book --pdf` on a tree whose notebooks and jupyter-book are stand-ins: the HTML index and the PDF
    are each named once in the whole console output (the build and the printer log, the command prints paths)."""
    import shutil

    from repro import book
    from tests.conftest import copy_book_sources

    root = copy_book_sources(tmp_path)
    monkeypatch.chdir(root)
    real_run = subprocess.run

    def execute(root, name, profile, out, params, log=print):
        shutil.copy2(root / "book" / f"{name}.ipynb", out)
        return 0.0

    def run(cmd, *args, **kwargs):
        if not str(cmd[0]).endswith("jupyter-book"):
            return real_run(cmd, *args, **kwargs)
        for entry in book.toc_entries(root):
            page = root / "_build" / "html" / f"{entry}.html"
            page.parent.mkdir(parents=True, exist_ok=True)
            page.write_text(f"<html><body><h1>{entry}</h1></body></html>")
        shutil.copy2(root / "_build" / "html" / "book" / "intro.html", root / "_build" / "html" / "index.html")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(book, "execute", execute)
    monkeypatch.setattr(book, "precompute", lambda *args, **kwargs: {})
    monkeypatch.setattr(book.subprocess, "run", run)
    assert cli.main(["book", "--profile", "smoke", "--pdf"]) == 0
    out, err = capsys.readouterr()
    index, pdf = root / "_build" / "html" / "index.html", root / "_build" / "book.pdf"
    assert str(index) in out.splitlines() and out.splitlines()[-1] == str(pdf) and pdf.is_file()
    assert (out + err).count(str(index)) == 1 and (out + err).count(str(pdf)) == 1, out + err
