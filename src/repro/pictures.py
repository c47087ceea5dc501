"""Pictures of the vision twins: a class shape of random colour on an attribute background, with pixel noise."""
from __future__ import annotations

import numpy as np


def _smooth_noise(rng, n: int, size: int, cells: int) -> np.ndarray:
    """(n, size, size) blotchy noise in [0, 1]: a cells x cells random grid, bilinearly upsampled."""
    grid = rng.random((n, cells + 1, cells + 1))
    t = np.linspace(0, cells, size, endpoint=False)
    i, f = t.astype(int), t - t.astype(int)
    rows = grid[:, i] * (1 - f)[None, :, None] + grid[:, i + 1] * f[None, :, None]
    return rows[:, :, i] * (1 - f) + rows[:, :, i + 1] * f


def textures(rng, n: int, size: int):
    """The random textures every background draws from (in this order, whether it uses them or not):
    yy, xx (size, size) pixel coordinates in [0, 1); blotch (n, size, size, 1) in [0, 1]; wave (n, size, size)."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    blotch = _smooth_noise(rng, n, size, 4)[..., None]
    freq, phase, tilt = rng.uniform(2, 5, (n, 1, 1)), rng.uniform(0, 2 * np.pi, (n, 1, 1)), rng.uniform(0, 1, (n, 1, 1))
    wave = 0.5 + 0.5 * np.sin(2 * np.pi * freq * yy + phase + tilt * np.sin(2 * np.pi * xx))
    return yy, xx, blotch, wave


def frames(rng, n: int, size: int):
    """Random placement of n shapes: u, v (n, size, size) pixel coordinates in each shape's rotated frame around
    its random centre, r (n, 1, 1) its radius in pixels, points (n, 1, 1) a random integer 5 or 6."""
    c = rng.uniform(0.35, 0.65, (2, n, 1, 1)) * size
    r = rng.uniform(0.2, 0.32, (n, 1, 1)) * size
    rot = rng.uniform(0, np.pi, (n, 1, 1))
    points = rng.integers(5, 7, (n, 1, 1))
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    dy, dx = yy - c[0], xx - c[1]
    return dx * np.cos(rot) + dy * np.sin(rot), -dx * np.sin(rot) + dy * np.cos(rot), r, points


def images(backgrounds, shapes, y: np.ndarray, a: np.ndarray, rng, size: int = 32) -> np.ndarray:
    """(n, size, size, 3) uint8 images: a shape by y of random colour on a background by a, pixel noise.

    backgrounds(a, rng, size) -> (n, size, size, 3) floats and shapes(y, rng, size) -> (n, size, size) booleans
    are a dataset's look (its record module defines them, drawing from `textures` and `frames`)."""
    out = np.empty((len(y), size, size, 3), np.uint8)
    for lo in range(0, len(y), 1024):
        yb, ab = y[lo:lo + 1024], a[lo:lo + 1024]
        img = backgrounds(ab, rng, size)
        colour = rng.uniform(0, 1, (len(yb), 1, 1, 3))
        img = np.where(shapes(yb, rng, size)[..., None], colour, img)
        img = img + rng.normal(0, 0.04, img.shape)
        out[lo:lo + 1024] = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    return out


def save_jpegs(pixels: np.ndarray, paths) -> None:
    """Write (n, S, S, 3) uint8 images as JPEGs (quality 90) to the n paths, creating their folders."""
    from PIL import Image

    for img, path in zip(pixels, paths):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(path, "JPEG", quality=90)
