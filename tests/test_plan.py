from repro import plan
from tests.test_book import REPO


def test_paper_dry_run_plans_without_computing(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_RUNS", str(tmp_path / "runs"))
    text = plan.book_plan("paper", root=REPO)
    assert "Plan of the 'paper' profile" in text and "device-hours" in text
    # no calibration in this store: the defaults' device is named, per dataset and model and for the total
    assert "| celeba · resnet50" in text and "default: NVIDIA H200" in text
    assert "at repro.cost.DEFAULT_RATES of NVIDIA H200" in text and "| appendix_a" in text
    # runs, examples, device-hours, disk and peak memory: per dataset and model, and per section
    for first in ("| dataset · model", "| section"):
        header = next(line for line in text.splitlines() if line.strip().startswith(first))
        assert all(c in header for c in ("runs", "training examples", "evaluation examples", "device-hours", "disk",
                                         "peak memory (est.)")), header
    row = next(line for line in text.splitlines() if line.strip().startswith("| appendix_a"))
    assert row.rstrip(" |").endswith("GB"), row  # its largest ERM run's peak memory, in a unit
    assert "erm:" in text and "heads:" in text and "0 cached" in text
    assert "repro data download" in text or "Missing: nothing" in text
    assert not (tmp_path / "runs").exists()  # nothing was computed


def test_section_registry_matches_the_notebooks():
    """Each registered section names a notebook whose parameters cell defines the section's plan keys, and the
    notebook calls the section's compute function with keyword arguments."""
    import re

    from repro import book, sections

    assert set(sections.SECTIONS) <= set(book.notebooks(REPO))
    for name, section in sections.SECTIONS.items():
        defaults = book.template_parameters(REPO / "book" / f"{name}.ipynb")
        assert set(section.params) <= set(defaults), f"{name}: {set(section.params) - set(defaults)}"
        assert "device" in defaults, f"{name}: every section notebook takes a device"
        code = (REPO / "book" / f"{name}.ipynb").read_text()
        computes = [section.compute] if section.compute else [  # the companions page runs four sections' functions
            sections.SECTIONS[n].compute for n in ("neural_collapse", "group_ratio", "class_balance", "appendix_a")]
        for compute in computes:
            call = re.search(rf"sections\.{compute.__name__}\((.*?)\)\\n", code, flags=re.S)
            assert call and call.group(1).startswith("datasets="), f"{name}: call sections.{compute.__name__}(...) with keywords"
        assert section.configs(profile="paper", **{k: defaults[k] for k in section.params})["erm"]


def test_twin_profiles_cost_the_twin_sizes():
    from repro import plan, synth

    assert plan.train_size("waterbirds", "smoke") == int(synth.counts("waterbirds", "smoke")[0].sum())
    assert plan.train_size("waterbirds", "cpu") > plan.train_size("waterbirds", "smoke")
    assert plan.train_size("waterbirds", "paper") == 4795


def test_missing_weights_advice_names_a_command_of_the_locked_environment():
    """The Hugging Face weights are fetched with `hf download` (huggingface_hub's command line; the older
    huggingface-cli is gone from the locked version)."""
    import subprocess
    import sys
    from pathlib import Path

    hub = {model: (name, how) for model, (name, how) in plan.WEIGHTS.items() if not name.endswith(".pth")}
    assert hub and all(how == f"hf download {name}" for name, how in hub.values())
    out = subprocess.run([str(Path(sys.executable).with_name("hf")), "download", "--help"], capture_output=True,
                         text=True)
    assert out.returncode == 0 and "REPO_ID" in out.stdout


def test_the_plan_counts_the_decoded_pixel_caches(tmp_path, monkeypatch):
    """File-backed image datasets get decoded-pixel caches next to their data (repro.pixels): the plan states their
    disk, the evaluation crops exactly (images x 224^2 x 3 bytes, from the bundled metadata when the data are
    absent) and the full-resolution images from image headers when the images are in place."""
    import pandas as pd
    from PIL import Image
    monkeypatch.chdir(tmp_path)
    unique = pd.DataFrame([{"kind": "erm", "dataset": "celeba", "data_root": str(tmp_path / "none"), "image_size": 224},
                           {"kind": "erm", "dataset": "multinli", "data_root": str(tmp_path / "none"), "image_size": 224},
                           {"kind": "erm", "dataset": "waterbirds", "data_root": "twins", "image_size": 32}])
    lines = plan.pixel_cache_lines(unique)
    assert len(lines) == 1 and "celeba (202,599 images" in lines[0]  # a text set and 32-px images get none
    assert f"{202_599 * 224 * 224 * 3 / 1e9:.1f} GB of evaluation crops" in lines[0] and "unknown" in lines[0]
    root = tmp_path / "real"
    from repro import synth
    synth.ensure(str(root), ["waterbirds"], scale="smoke")  # images in the real layout
    frame = __import__("repro.metadata", fromlist=["read"]).read("waterbirds", root)
    folder = __import__("repro.metadata", fromlist=["find_root"]).find_root("waterbirds", root)
    for name in frame["input"]:  # every image 40 x 30 px
        Image.new("RGB", (40, 30)).save(folder / name)
    unique = pd.DataFrame([{"kind": "erm", "dataset": "waterbirds", "data_root": str(root), "image_size": 224}])
    line = plan.pixel_cache_lines(unique)[0]
    assert f"{len(frame) * 40 * 30 * 3 / 1e6:.1f} MB full-resolution" in line, line
