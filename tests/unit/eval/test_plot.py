"""Modality-projection PNG: written, right size, both modality colours drawn, deterministic; PCA is correct."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tara_batch.eval import plot as P


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def gap_data(seed=0, n=200, d=32, shift=0.3):
    rng = np.random.default_rng(seed)
    v = unit(rng.standard_normal((n, d)))
    t = unit(v + 0.5 * rng.standard_normal((n, d)) + shift)
    return v, t


def count_colour(img, colour):
    a = np.asarray(img.convert("RGB"))
    return int((a == np.array(colour, dtype=np.uint8)).all(axis=2).sum())


@pytest.mark.parametrize("size", [256, 640])
def test_png_written_with_size_and_colours(tmp_path, size):
    v, t = gap_data()
    out = P.modality_projection_png(v, t, tmp_path / "gap.png", title="gap 0.51", size=size)
    assert out == tmp_path / "gap.png" and out.exists()
    with Image.open(out) as img:
        assert img.format == "PNG"
        assert img.size == (size, size)
        # far more pixels of each colour than the legend swatch (9 x 9) alone: the points are drawn
        assert count_colour(img, P.VIDEO_COLOUR) > 200
        assert count_colour(img, P.TEXT_COLOUR) > 200
        assert count_colour(img, P.MEAN_COLOURS["video"]) > 0
        assert count_colour(img, P.MEAN_COLOURS["text"]) > 0
        assert count_colour(img, P.PAIR_COLOUR) > 0  # paired -> pair lines
        assert count_colour(img, (255, 255, 255)) > size * size // 4  # white background


def test_unpaired_and_subsampled(tmp_path):
    rng = np.random.default_rng(1)
    v, t = unit(rng.standard_normal((500, 16))), unit(rng.standard_normal((70, 16)) + 1.0)
    out = P.modality_projection_png(v, t, str(tmp_path / "u.png"), max_points=100, size=300)
    with Image.open(out) as img:
        assert img.size == (300, 300)
        assert count_colour(img, P.PAIR_COLOUR) == 0  # not paired -> no pair lines
        assert count_colour(img, P.VIDEO_COLOUR) > 81 and count_colour(img, P.TEXT_COLOUR) > 81


def test_deterministic_bytes(tmp_path):
    v, t = gap_data(seed=2, n=800)
    a = P.modality_projection_png(v, t, tmp_path / "a.png", title="t", max_points=300, seed=7)
    b = P.modality_projection_png(v, t, tmp_path / "b.png", title="t", max_points=300, seed=7)
    assert a.read_bytes() == b.read_bytes()
    c = P.modality_projection_png(v, t, tmp_path / "c.png", title="t", max_points=300, seed=8)
    assert c.read_bytes() != a.read_bytes()  # a different subsample


def test_pca_2d_matches_covariance_eigenvectors():
    rng = np.random.default_rng(3)
    # anisotropic data in a random rotation: variances 25, 4, 1, 0.25, ... -> well separated top-2 eigenvalues
    d = 6
    basis, _ = np.linalg.qr(rng.standard_normal((d, d)))
    z = rng.standard_normal((400, d)) * np.array([5.0, 2.0, 1.0, 0.5, 0.3, 0.1])
    x = z @ basis.T + rng.standard_normal(d) * 3  # plus an offset: PCA must centre
    got = P.pca_2d(x)
    assert got.shape == (400, 2) and got.dtype == np.float64
    evals, evecs = np.linalg.eigh(np.cov(x, rowvar=False))
    top = evecs[:, np.argsort(evals)[::-1][:2]]
    expected = (x - x.mean(axis=0)) @ top
    for k in range(2):
        sign = np.sign(got[:, k] @ expected[:, k])
        np.testing.assert_allclose(got[:, k], sign * expected[:, k], atol=1e-9)
    np.testing.assert_allclose(got.mean(axis=0), 0, atol=1e-9)
    # signs are fixed: the largest-|loading| entry of each component is positive, so flipping the data's sign
    # (which flips every singular vector) gives the mirrored projection, and the same input gives the same output
    np.testing.assert_array_equal(P.pca_2d(x), got)
    np.testing.assert_allclose(P.pca_2d(-x), -got, atol=1e-9)


def test_pca_2d_rank_one_and_errors():
    x = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])
    p = P.pca_2d(x)
    np.testing.assert_allclose(p[:, 0], np.array([-1, 0, 1]) * np.sqrt(2), atol=1e-12)
    np.testing.assert_allclose(p[:, 1], 0, atol=1e-12)
    np.testing.assert_allclose(P.pca_2d(np.array([[1.0, 2.0, 3.0]])), [[0.0, 0.0]])
    with pytest.raises(ValueError):
        P.pca_2d(np.zeros(3))
    with pytest.raises(ValueError):
        P.pca_2d(np.zeros((0, 3)))


def test_bad_input(tmp_path):
    v, t = gap_data(n=10, d=8)
    with pytest.raises(ValueError, match="2-D"):
        P.modality_projection_png(v[0], t, tmp_path / "x.png")
    with pytest.raises(ValueError, match="dims differ"):
        P.modality_projection_png(v, t[:, :4], tmp_path / "x.png")
    with pytest.raises(ValueError, match="non-empty"):
        P.modality_projection_png(v[:0], t, tmp_path / "x.png")
    with pytest.raises(ValueError, match="size"):
        P.modality_projection_png(v, t, tmp_path / "x.png", size=10)
    with pytest.raises(ValueError, match="max_points"):
        P.modality_projection_png(v, t, tmp_path / "x.png", max_points=0)
    assert not (tmp_path / "x.png").exists()
