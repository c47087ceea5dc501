"""Decoded-pixel caches (repro.pixels): batches bit for bit equal to decoding the files, written once and atomically,
damage detected and rebuilt, a folder that cannot be written read from its files."""
import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from repro import data as datas
from repro import device as devices
from repro import erm, inputs, pixels, synth
from repro.data import GroupData
from tests.conftest import image_data


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    """The 224 px Waterbirds twin of the rehearsal (92 JPEGs), in its real layout."""
    root = tmp_path_factory.mktemp("twin")
    synth.ensure(root, ["waterbirds"], scale="rehearse", image_size=224, min_count=[2, 2, 2])
    return datas.load("waterbirds", root)


def odd_images(folder, shapes=((375, 500), (500, 333), (218, 178), (97, 140), (224, 224), (256, 300))):
    """JPEGs of the given (height, width)s, like the real datasets' (Waterbirds ~500 px, CelebA 218x178)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    paths = []
    for i, (h, w) in enumerate(shapes):
        ramp = np.linspace(0, 170, w)[None, :, None] + np.linspace(0, 60, h)[:, None, None]
        Image.fromarray((rng.random((h, w, 3)) * 80 + ramp).astype(np.uint8)).save(folder / f"{i}.jpg", quality=90)
        paths.append(str(folder / f"{i}.jpg"))
    n = len(paths)
    return GroupData("waterbirds", "image", np.array(paths, dtype=object), np.arange(n) % 2, np.arange(n) // 2 % 2,
                     np.zeros(n, int), root=str(folder))


def _cfg(**kw):
    return erm.default_config("waterbirds", "smoke", data_root="memory",
                              **{"batch_size": 4, "image_size": 224, "data_fingerprint": "test", **kw})


def _all(pipe, n, train, epoch=0):
    order = np.random.default_rng(epoch).permutation(n)
    return [x for _, x in pipe.batches(order, 4, train=train, epoch=epoch)]


def _same(a, b):
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.fixture
def fresh_notes(monkeypatch):
    monkeypatch.setattr(pixels, "_SAID", set())  # every test sees its own notes


@pytest.mark.parametrize("which", ["twin", "odd"])
def test_cached_batches_equal_the_files_batches(which, twin, tmp_path, fresh_notes):
    data = twin if which == "twin" else odd_images(tmp_path / "odd")
    n = len(data.y) if which == "odd" else 24  # the twin: its first 24 images (the caches hold all 92)
    files = inputs.Inputs(data, _cfg(), workers=0, cache=False)
    cached = inputs.Inputs(data, _cfg(), workers=0, cache=True)
    assert cached.pixel_cache and not files.pixel_cache
    for train, epoch in ((True, 0), (True, 3), (False, 0)):
        a, b = _all(files, n, train, epoch), _all(cached, n, train, epoch)
        assert a[0].shape == (4, 3, 224, 224) and _same(a, b), (train, epoch)
    assert not torch.equal(_all(cached, n, True, 0)[0], _all(cached, n, True, 3)[0])  # epochs augment differently
    if which == "odd":  # DataLoader workers map the cache files themselves
        assert _same(_all(files, n, True, 5), _all(inputs.Inputs(data, _cfg(), workers=2, cache=True), n, True, 5))
        plain = odd_images(tmp_path / "plain")  # no augmentation: only the eval crops, decoded from the files
        files, cached = (inputs.Inputs(plain, _cfg(augment=False), workers=0, cache=c) for c in (False, True))
        assert cached.pixel_cache and len(list((tmp_path / "plain" / pixels.FOLDER).glob("*.u8"))) == 1
        assert _same(_all(files, n, True), _all(cached, n, True))


def test_caches_are_written_once_and_atomically(tmp_path, monkeypatch, fresh_notes):
    data = odd_images(tmp_path / "odd")
    rng = torch.random.get_rng_state()
    pipe = inputs.Inputs(data, _cfg(), workers=1)  # on by default
    assert torch.equal(rng, torch.random.get_rng_state())  # building drew nothing from the run's generator
    first = _all(pipe, 6, True)
    folder = tmp_path / "odd" / pixels.FOLDER
    names = sorted(p.name for p in folder.iterdir())
    assert len(names) == 4 and all(not n.startswith(".") for n in names), names  # no tmp or lock file left
    full = next(folder.glob("waterbirds-full-*.u8"))
    meta = json.loads(full.with_suffix(".json").read_text())
    assert meta["shapes"][0] == [375, 500] and meta["dtype"] == "uint8" and meta["bytes"] == full.stat().st_size
    assert all(pixels.verify(p) for p in folder.glob("*.u8"))

    def fail(*args):
        raise AssertionError("a cache was built twice")
    monkeypatch.setattr(pixels, "_build", fail)
    again = inputs.Inputs(data, _cfg(), workers=0)
    assert again.pixel_cache and _same(first, _all(again, 6, True))
    assert inputs.Inputs(data, _cfg(augment=False), workers=0).pixel_cache  # the eval crops, cached already
    with pytest.raises(AssertionError, match="built twice"):  # other data files: other caches
        inputs.Inputs(data, _cfg(data_fingerprint="changed"), workers=0)


@pytest.mark.parametrize("damage", ["truncated", "first MiB", "header"])
def test_damaged_cache_is_rebuilt_with_a_warning(damage, tmp_path, capsys, fresh_notes):
    data = odd_images(tmp_path / "odd")
    want = _all(inputs.Inputs(data, _cfg(), workers=0), 6, True)
    full = next((tmp_path / "odd" / pixels.FOLDER).glob("waterbirds-full-*.u8"))
    if damage == "truncated":
        os.truncate(full, full.stat().st_size - 1)
    elif damage == "first MiB":
        with open(full, "r+b") as f:
            f.seek(100)
            byte = f.read(1)[0]
            f.seek(100)
            f.write(bytes([byte ^ 0xFF]))
    else:
        full.with_suffix(".json").write_text("{not json")
    capsys.readouterr()
    pipe = inputs.Inputs(data, _cfg(), workers=0)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"warning: the pixel cache {full} is damaged"), err
    assert pipe.pixel_cache and pixels.verify(full) and _same(want, _all(pipe, 6, True))


def test_damage_past_the_probe_is_found_by_verify(tmp_path, fresh_notes):
    data = odd_images(tmp_path / "odd", shapes=((700, 700),) * 3)  # 4.4 MB: its middle is not read on open
    inputs.Inputs(data, _cfg(), workers=0)
    full = next((tmp_path / "odd" / pixels.FOLDER).glob("waterbirds-full-*.u8"))
    assert pixels.verify(full)
    with open(full, "r+b") as f:
        f.seek(full.stat().st_size // 2)
        f.write(b"\0\1\2")
    assert inputs.Inputs(data, _cfg(), workers=0).pixel_cache  # the cheap check on open passes
    assert not pixels.verify(full)  # the full sha256 does not


def test_read_only_data_folder_falls_back_to_the_files(tmp_path, monkeypatch, capsys, fresh_notes):
    data = odd_images(tmp_path / "odd")
    folder = tmp_path / "odd"
    folder.chmod(0o555)
    if os.geteuid() == 0:  # root writes anywhere: make the folder look read-only, as a read-only mount does
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode: False if mode == os.W_OK else real(p, mode))
    try:
        capsys.readouterr()
        pipe = inputs.Inputs(data, _cfg(), workers=0)
        err = capsys.readouterr().err.strip().splitlines()
        assert not pipe.pixel_cache and not (folder / pixels.FOLDER).exists()
        assert len(err) == 1 and err[0].startswith(f"note: {folder} is not writable"), err
        assert _same(_all(pipe, 6, False), _all(inputs.Inputs(data, _cfg(), workers=0, cache=False), 6, False))
    finally:
        folder.chmod(0o755)


def test_pixel_cache_is_an_execution_detail(tmp_path, monkeypatch, fresh_notes):
    """REPRO_PIXEL_CACHE is no config key: a run's id and its every number are the same with and without it."""
    data = image_data(tmp_path, (16, 4, 6), size=80, suffix=".jpg")
    monkeypatch.setattr(erm, "load_data", lambda config: data)
    cfg = _cfg(image_size=72, epochs=2)
    assert not any("pixel" in key for key in cfg)
    out = []
    for flag in ("0", "1"):
        monkeypatch.setenv(devices.PIXEL_CACHE_ENV, flag)
        (tmp_path / flag).mkdir()
        out.append(erm.train(cfg, tmp_path / flag))
    assert len(list((tmp_path / pixels.FOLDER).glob("*.u8"))) == 2
    assert json.dumps(out[0]) == json.dumps(out[1])
    monkeypatch.setenv(devices.PIXEL_CACHE_ENV, "yes")
    with pytest.raises(ValueError, match="REPRO_PIXEL_CACHE='yes': expected 0 or 1"):
        inputs.Inputs(data, cfg, workers=0)


def test_a_full_disk_falls_back_to_the_files_and_leaves_nothing(tmp_path, monkeypatch, capsys, fresh_notes):
    data = odd_images(tmp_path / "odd")
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: shutil._ntuple_diskusage(1 << 40, 1 << 40, 0))
    capsys.readouterr()
    pipe = inputs.Inputs(data, _cfg(), workers=0)
    err = capsys.readouterr().err.strip().splitlines()
    assert not pipe.pixel_cache and list((tmp_path / "odd" / pixels.FOLDER).iterdir()) == []
    assert err[-1].startswith(f"note: {tmp_path / 'odd' / pixels.FOLDER} has 0.0 GiB free, the full pixel cache"), err

