"""Temporal grounding (moment retrieval) with embeddings: which span of a video does a text query describe?

TARA is a retrieval embedding, not a grounding head, so grounding is done the way embedding baselines do it on
Charades-STA: embed overlapping windows of each video, score every window of the query's own video against the
query (cosine == dot product of L2-normalised embeddings), and turn the per-window scores into one moment.

The rule (:func:`predict_moment`), for the windows of one video sorted by start (ties: by end, then input order):

1. take the best-scoring window (ties -> the earliest in that order, i.e. the earliest start);
2. grow a contiguous run of neighbouring windows to the left and to the right while the next window's score is
   ``>= threshold``, ``threshold = best - ratio * (best - min(scores))`` (computed as
   ``(1 - ratio) * best + ratio * min``, which is exact at ``ratio`` 0 and 1);
3. the moment is ``[min start, max end]`` over the run: the first window's start and, for equal-length sliding
   windows, the last window's end. (With overlapping windows of different lengths the last window in start order
   may end before an earlier, longer one; taking the max end keeps the moment covering every window of the run,
   in particular the best one.)

Why a relative threshold: query/window cosine scores are not calibrated across queries or videos, so an absolute
cut-off would be meaningless; ``ratio`` is a fraction of this video's own score range (0 -> only windows tied
with the best join, 1 -> the run spans every window). Why contiguous: a moment is one interval, and a
high-scoring window elsewhere in the video (a repeated action) must not stretch it. Degenerate case: when all
scores are equal (including a single window) there is no signal to localise with, and the best (= earliest)
window alone is returned rather than the whole video.

:func:`grounding_metrics` reports as Charades-STA papers do: ``R1@m`` = percentage of queries whose top-1 moment
has temporal IoU >= m, and ``mIoU`` = mean IoU, both x100 (TAR-TVG reports 61.1 mIoU).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import numpy as np

from tara_batch.eval.metrics import paired_matrices

__all__ = ["ground_queries", "grounding_metrics", "predict_moment", "temporal_iou"]


def _intervals(name: str, x: np.ndarray) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 2:
        raise ValueError(f"{name} must be a float [N, 2] array of (start, end), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} row {int(np.argmax(~np.isfinite(a).all(axis=1)))} is not finite")
    bad = a[:, 0] > a[:, 1]
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{name} row {i} has start > end: ({a[i, 0]}, {a[i, 1]})")
    return a


def temporal_iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Row-wise temporal IoU of ``pred[i]`` vs ``gt[i]`` (both ``[N, 2]`` (start, end) seconds), float64 ``[N]``.

    ``inter = max(0, min(e1, e2) - max(s1, s2))``, ``union = (e1 - s1) + (e2 - s2) - inter``. Touching intervals
    have IoU 0. A zero union (both intervals zero-length) gives 1.0 if they are the same point, else 0.0.
    """
    p, g = _intervals("pred", pred), _intervals("gt", gt)
    if p.shape != g.shape:
        raise ValueError(f"pred {p.shape} and gt {g.shape} differ in shape")
    inter = np.maximum(0.0, np.minimum(p[:, 1], g[:, 1]) - np.maximum(p[:, 0], g[:, 0]))
    union = (p[:, 1] - p[:, 0]) + (g[:, 1] - g[:, 0]) - inter
    same = (p == g).all(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), same.astype(np.float64))
    return iou


def grounding_metrics(
    pred: np.ndarray, gt: np.ndarray, thresholds: Sequence[float] = (0.3, 0.5, 0.7)
) -> dict[str, float]:
    """``{"R1@m": percent of queries with IoU >= m for m in thresholds, "mIoU": mean IoU x 100}``.

    Keys format the threshold with ``:g`` (0.3 -> ``"R1@0.3"``). ``>=``: an IoU exactly at the threshold counts.
    """
    iou = temporal_iou(pred, gt)
    if iou.size == 0:
        raise ValueError("no queries")
    out = {f"R1@{float(m):g}": 100.0 * float(np.mean(iou >= m)) for m in thresholds}
    out["mIoU"] = 100.0 * float(np.mean(iou))
    return out


def _check_ratio(ratio: float) -> float:
    r = float(ratio)
    if not 0.0 <= r <= 1.0:
        raise ValueError(f"ratio must be in [0, 1], got {ratio}")
    return r


def _windows(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated windows of one video and their order: by start, then end, then input position (stable)."""
    s = np.asarray(starts, dtype=np.float64).reshape(-1)
    e = np.asarray(ends, dtype=np.float64).reshape(-1)
    if s.shape != e.shape:
        raise ValueError(f"starts ({s.size}) and ends ({e.size}) differ in length")
    if s.size == 0:
        raise ValueError("no windows")
    if not (np.isfinite(s).all() and np.isfinite(e).all()):
        raise ValueError("window starts/ends must be finite")
    if (s > e).any():
        i = int(np.argmax(s > e))
        raise ValueError(f"window {i} has start > end: ({s[i]}, {e[i]})")
    order = np.lexsort((e, s))  # lexsort is stable: equal (start, end) keep input order
    return s[order], e[order], order


def _moments_sorted(starts: np.ndarray, ends: np.ndarray, scores: np.ndarray, ratio: float) -> np.ndarray:
    """The rule for ``k`` score rows over the same ``W`` windows, already in start order: float64 ``[k, 2]``."""
    k, w = scores.shape
    rows = np.arange(k)
    best_j = np.argmax(scores, axis=1)  # first maximum -> earliest start on ties
    best = scores[rows, best_j]
    low = scores.min(axis=1)
    thr = np.clip((1.0 - ratio) * best + ratio * low, low, best)
    ok = scores >= thr[:, None]
    ok[best == low] = False  # all scores equal: no signal, the best window alone
    ok[rows, best_j] = True
    idx = np.arange(w)[None, :]
    b = best_j[:, None]
    left = np.where(~ok & (idx < b), idx, -1).max(axis=1) + 1  # just after the last gap before the best window
    right = np.where(~ok & (idx > b), idx, w).min(axis=1) - 1  # just before the first gap after it
    in_run = (idx >= left[:, None]) & (idx <= right[:, None])
    out = np.empty((k, 2), dtype=np.float64)
    out[:, 0] = starts[left]  # sorted by start: the first window of the run has the min start
    out[:, 1] = np.where(in_run, ends[None, :], -np.inf).max(axis=1)
    return out


def predict_moment(
    starts: np.ndarray, ends: np.ndarray, scores: np.ndarray, *, ratio: float = 0.5
) -> tuple[float, float]:
    """Predicted ``(start, end)`` of one video's moment from its windows' scores (see the module docstring).

    ``starts``, ``ends``, ``scores``: 1-D, one entry per window, any order; windows may overlap.
    """
    r = _check_ratio(ratio)
    s, e, order = _windows(starts, ends)
    sc = np.asarray(scores, dtype=np.float64).reshape(-1)
    if sc.shape != s.shape:
        raise ValueError(f"{sc.size} scores for {s.size} windows")
    if not np.isfinite(sc).all():
        raise ValueError("scores must be finite")
    start, end = _moments_sorted(s, e, sc[order][None, :], r)[0]
    return float(start), float(end)


def ground_queries(
    query_emb: np.ndarray,
    window_emb: np.ndarray,
    window_video: Sequence[str],
    window_start: np.ndarray,
    window_end: np.ndarray,
    query_video: Sequence[str],
    *,
    ratio: float = 0.5,
) -> np.ndarray:
    """Ground every query in its own video: float64 ``[Q, 2]`` predicted (start, end) per query.

    Query i is scored (float32 ``query_emb[i] @ window_emb[j]``) only against the windows j with
    ``window_video[j] == query_video[i]``, then :func:`predict_moment`'s rule is applied. Windows are grouped by
    video once (one stable argsort); each video's queries are scored with one matmul and resolved together, so
    memory is O(queries of a video x windows of that video). ValueError if a query's video has no windows.
    """
    r = _check_ratio(ratio)
    q, w = paired_matrices("query_emb", query_emb, "window_emb", window_emb)
    wv = np.asarray(list(window_video), dtype=object)
    qv = np.asarray(list(query_video), dtype=object)
    ws = np.asarray(window_start, dtype=np.float64).reshape(-1)
    we = np.asarray(window_end, dtype=np.float64).reshape(-1)
    if not (wv.size == ws.size == we.size == w.shape[0]):
        raise ValueError(f"{w.shape[0]} window embeddings, {wv.size} window videos, {ws.size} starts, {we.size} ends")
    if qv.size != q.shape[0]:
        raise ValueError(f"{q.shape[0]} query embeddings for {qv.size} query videos")
    out = np.empty((q.shape[0], 2), dtype=np.float64)
    if q.shape[0] == 0:
        return out
    vocab = {v: i for i, v in enumerate(dict.fromkeys([*wv.tolist(), *qv.tolist()]))}
    w_code = np.fromiter((vocab[v] for v in wv.tolist()), dtype=np.int64, count=wv.size)
    q_code = np.fromiter((vocab[v] for v in qv.tolist()), dtype=np.int64, count=qv.size)
    w_order = np.argsort(w_code, kind="stable")
    w_bounds = np.searchsorted(w_code[w_order], np.arange(len(vocab) + 1))
    q_order = np.argsort(q_code, kind="stable")
    q_sorted = q_code[q_order]
    q_bounds = np.flatnonzero(np.r_[True, q_sorted[1:] != q_sorted[:-1], True])
    for a, b in pairwise(q_bounds.tolist()):
        v = int(q_sorted[a])
        win = w_order[w_bounds[v] : w_bounds[v + 1]]
        if win.size == 0:
            raise ValueError(f"video {qv[q_order[a]]!r} (query {int(q_order[a])}) has no windows")
        s, e, order = _windows(ws[win], we[win])
        win = win[order]
        qi = q_order[a:b]
        scores = (q[qi] @ w[win].T).astype(np.float64)
        if not np.isfinite(scores).all():
            raise ValueError(f"non-finite scores for video {qv[qi[0]]!r}")
        out[qi] = _moments_sorted(s, e, scores, r)
    return out
