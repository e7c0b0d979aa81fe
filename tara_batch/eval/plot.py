"""A picture of the modality gap: video and text embeddings projected onto their first two principal components.

Why: contrastive video-text models leave the two modalities in separate regions of the sphere (Liang et al. 2022,
"the modality gap"); TARA shrinks the gap (``metrics.modality_gap``) from 0.51 to 0.20. One number does not show
*how* the clouds sit, so :func:`modality_projection_png` draws both sets in the same 2-D PCA plane: overlapping
clouds with short pair lines mean a small gap, two separated clouds joined by long parallel lines mean a large one.

How: the union of both (subsampled) sets is centred and projected onto its first two principal components (numpy
SVD; each component's sign is fixed so that its largest-magnitude loading is positive, so the picture is
deterministic). Drawing uses Pillow only (matplotlib is not a dependency): white background, video points in
blue, text points in orange, thin light-grey lines between paired rows (when both arrays have the same length), the two
modality means as large crosses, an axes box, a legend and the title.

Each modality is subsampled to at most ``max_points`` rows with a seeded RNG (the same rows of both when paired, so
pair lines stay meaningful); the PCA is fitted on the drawn points, which bounds the SVD cost to
``2 * max_points`` rows. The means are those of the full sets, projected onto the same plane.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from tara_batch.eval.metrics import paired_matrices

__all__ = ["MEAN_COLOURS", "PAIR_COLOUR", "TEXT_COLOUR", "VIDEO_COLOUR", "modality_projection_png", "pca_2d"]

VIDEO_COLOUR = (31, 119, 180)
TEXT_COLOUR = (255, 127, 14)
PAIR_COLOUR = (206, 211, 224)  # a tinted light grey: never produced by anti-aliased black text
MEAN_COLOURS = {"video": (8, 48, 107), "text": (166, 54, 3)}
_BLACK = (0, 0, 0)


def _pca_basis(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mean [d], components [2, d])`` of ``x`` ``[N, d]``; missing components (rank < 2) are zero rows."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] == 0:
        raise ValueError(f"pca needs a non-empty 2-D [N, d] array, got shape {a.shape}")
    mean = a.mean(axis=0)
    _, _, vt = np.linalg.svd(a - mean, full_matrices=False)
    comps = np.zeros((2, a.shape[1]), dtype=np.float64)
    k = min(2, vt.shape[0])
    comps[:k] = vt[:k]
    # sign fix: the largest-|loading| entry of each component is positive (first such entry on ties)
    signs = np.sign(comps[np.arange(2), np.argmax(np.abs(comps), axis=1)])
    comps *= np.where(signs == 0, 1.0, signs)[:, None]
    return mean, comps


def pca_2d(x: np.ndarray) -> np.ndarray:
    """Project ``x`` ``[N, d]`` onto its first two principal components: float64 ``[N, 2]``, deterministic signs.

    Column k is ``(x - mean) @ v_k`` with ``v_k`` the k-th right singular vector of the centred data (= the k-th
    eigenvector of the covariance), signed so its largest-magnitude entry is positive. Zero columns when rank < 2.
    """
    mean, comps = _pca_basis(x)
    return (np.asarray(x, dtype=np.float64) - mean) @ comps.T


def _subsample(rng: np.random.Generator, n: int, max_points: int) -> np.ndarray:
    if n <= max_points:
        return np.arange(n)
    return np.sort(rng.choice(n, size=max_points, replace=False))


def modality_projection_png(
    video_emb: np.ndarray,
    text_emb: np.ndarray,
    path: str | os.PathLike[str],
    *,
    title: str = "",
    size: int = 640,
    max_points: int = 5000,
    seed: int = 0,
) -> Path:
    """Write a ``size`` x ``size`` PNG of both modalities in their joint 2-D PCA plane; return its path.

    ``video_emb`` ``[Nv, d]`` and ``text_emb`` ``[Nt, d]`` (same d). Equal lengths are taken to be paired rows.
    """
    v, t = paired_matrices("video_emb", video_emb, "text_emb", text_emb, np.float64)
    if v.shape[0] == 0 or t.shape[0] == 0:
        raise ValueError("video_emb and text_emb must be non-empty")
    if not (np.isfinite(v).all() and np.isfinite(t).all()):
        raise ValueError("embeddings must be finite")
    if int(size) < 128:
        raise ValueError(f"size must be >= 128 pixels, got {size}")
    if int(max_points) < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points}")
    size, max_points = int(size), int(max_points)

    paired = v.shape[0] == t.shape[0]
    rng = np.random.default_rng(seed)
    vi = _subsample(rng, v.shape[0], max_points)
    ti = vi if paired else _subsample(rng, t.shape[0], max_points)
    vs, ts = v[vi], t[ti]
    mean, comps = _pca_basis(np.concatenate([vs, ts]))
    pv, pt = (vs - mean) @ comps.T, (ts - mean) @ comps.T
    means = {"video": comps @ (v.mean(axis=0) - mean), "text": comps @ (t.mean(axis=0) - mean)}

    # layout: title band on top, square plot box below; equal scale on both axes so distances are faithful
    pad = max(8, size // 40)
    top = pad + 16 + pad if title else pad
    box = (pad, top, size - pad - 1, size - pad - 1)
    inner = 6
    allp = np.concatenate([pv, pt, np.stack(list(means.values()))])
    lo, hi = allp.min(axis=0), allp.max(axis=0)
    centre = (lo + hi) / 2
    span = float(max(hi[0] - lo[0], hi[1] - lo[1]))
    span = span if span > 0 else 1.0
    w_px = min(box[2] - box[0], box[3] - box[1]) - 2 * inner
    scale = w_px / span
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2

    def to_px(p: np.ndarray) -> np.ndarray:
        p = np.atleast_2d(p)
        return np.stack([cx + (p[:, 0] - centre[0]) * scale, cy - (p[:, 1] - centre[1]) * scale], axis=1)

    img = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    xv, xt = to_px(pv), to_px(pt)
    if paired:
        for (x0, y0), (x1, y1) in zip(xv.tolist(), xt.tolist(), strict=True):
            draw.line([(x0, y0), (x1, y1)], fill=PAIR_COLOUR, width=1)
    r = 2 if size >= 320 else 1
    for pts, colour in ((xv, VIDEO_COLOUR), (xt, TEXT_COLOUR)):
        for x, y in pts.tolist():
            draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)
    arm = max(6, size // 50)
    for name, m in means.items():
        (x, y), c = to_px(m)[0].tolist(), MEAN_COLOURS[name]
        draw.line([(x - arm, y), (x + arm, y)], fill=c, width=3)
        draw.line([(x, y - arm), (x, y + arm)], fill=c, width=3)
    draw.rectangle(box, outline=_BLACK, width=1)
    draw.text((box[2] - 30, box[3] - 14), "PC1", fill=_BLACK, font=font)
    draw.text((box[0] + 4, box[1] + 4 + 2 * 16 + 8), "PC2", fill=_BLACK, font=font)
    # legend, top-left inside the box
    lx, ly = box[0] + 6, box[1] + 6
    for k, (label, colour) in enumerate((("video", VIDEO_COLOUR), ("text", TEXT_COLOUR))):
        y = ly + 16 * k
        draw.rectangle([lx, y + 2, lx + 8, y + 10], fill=colour)
        draw.text((lx + 14, y), label, fill=_BLACK, font=font)
    if title:
        draw.text((pad, pad), title, fill=_BLACK, font=font)

    out = Path(path)
    img.save(out, format="PNG")
    return out
