"""Pictures of the vision twins: a class shape of random colour on an attribute texture, with pixel noise."""
from __future__ import annotations

import numpy as np



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


def save_jpegs(pixels: np.ndarray, paths) -> None:
    """Write (n, S, S, 3) uint8 images as JPEGs (quality 90) to the n paths, creating their folders."""
    from PIL import Image

    for img, path in zip(pixels, paths):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(path, "JPEG", quality=90)
