"""The `repro` command line: --help everywhere, Table 2 from the real metadata, run erm twice, a full disk."""
import errno
import io
import os
import subprocess
import sys
from contextlib import redirect_stdout

import pandas as pd
import pytest

from repro import cli, data

SUBCOMMANDS = [[], ["book"], ["data"], ["data", "table"], ["data", "synth"], ["data", "download"], ["run"], ["run", "erm"]]


@pytest.mark.parametrize("words", SUBCOMMANDS, ids=lambda w: " ".join(w) or "repro")
def test_help_on_every_subcommand(words, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([*words, "--help"])
    assert exit_.value.code == 0 and "usage: repro" in capsys.readouterr().out


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


def test_data_table_defaults_to_the_vendored_metadata(real_root, capsys):
    assert cli.main(["data", "table"]) == 0
    default = capsys.readouterr().out
    assert cli.main(["data", "table", "--root", str(real_root)]) == 0
    assert default == capsys.readouterr().out and default.count("\n") == 15  # header + 14 groups


def test_data_table_on_an_empty_root_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["data", "table", "--root", str(tmp_path)]) == 2
    assert "repro data synth" in capsys.readouterr().err


def test_run_erm_twice_does_no_work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REPRO_RUNS", str(tmp_path / "runs"))
    first = subprocess.run([sys.executable, "-m", "repro", "run", "erm", "--dataset", "waterbirds", "--profile", "smoke"],
                           capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    path = first.stdout.strip().splitlines()[-1]
    assert (tmp_path / "runs" / "erm").is_dir() and path.startswith(str(tmp_path / "runs" / "erm"))
    stamp = (tmp_path / "runs" / "erm" / path.rsplit("/", 1)[1] / "done").stat().st_mtime_ns
    second = subprocess.run([sys.executable, "-m", "repro", "run", "erm", "--dataset", "waterbirds", "--profile", "smoke"],
                            capture_output=True, text=True)
    assert second.stdout.strip().splitlines()[-1] == path
    assert (tmp_path / "runs" / "erm" / path.rsplit("/", 1)[1] / "done").stat().st_mtime_ns == stamp


def test_data_synth_then_table_shows_table2_proportions(tmp_path, capsys):
    assert cli.main(["data", "synth", "waterbirds", "civilcomments", "--root", str(tmp_path), "--scale", "smoke"]) == 0
    capsys.readouterr()
    assert cli.main(["data", "table", "--root", str(tmp_path)]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
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
