"""Temporal grounding: IoU, the window-run moment rule, Charades-STA metrics and per-video query grounding agree with
hand-computed answers and with naive pure-Python reimplementations."""

from __future__ import annotations

import numpy as np
import pytest

from tara_batch.eval import grounding as TG

# ----------------------------------------------------------------- naive, independent reference implementations


def naive_iou(p, g):
    (s1, e1), (s2, e2) = p, g
    inter = max(0.0, min(e1, e2) - max(s1, s2))
    union = (e1 - s1) + (e2 - s2) - inter
    if union == 0:
        return 1.0 if (s1, e1) == (s2, e2) else 0.0
    return inter / union


def naive_moment(starts, ends, scores, ratio=0.5):
    wins = sorted(zip(starts, ends, scores, range(len(starts)), strict=True), key=lambda x: (x[0], x[1], x[3]))
    sc = [x[2] for x in wins]
    best = max(sc)
    b = sc.index(best)  # first maximum in start order
    low = min(sc)
    if best == low:
        return wins[b][0], wins[b][1]
    thr = min(best, max(low, (1 - ratio) * best + ratio * low))
    lo = b
    while lo - 1 >= 0 and sc[lo - 1] >= thr:
        lo -= 1
    hi = b
    while hi + 1 < len(sc) and sc[hi + 1] >= thr:
        hi += 1
    return wins[lo][0], max(x[1] for x in wins[lo : hi + 1])


def random_intervals(rng, n, integer=False):
    if integer:
        a = rng.integers(0, 10, size=(n, 2)).astype(float)
    else:
        a = rng.uniform(0, 30, size=(n, 2))
    return np.sort(a, axis=1)


# ----------------------------------------------------------------- temporal IoU


def test_iou_hand_cases():
    pred = np.array(
        [
            [0, 10],  # partial overlap with [5, 15]: 5 / 15
            [2, 4],  # contained in [0, 10]: 2 / 10
            [0, 1],  # disjoint from [2, 3]
            [0, 2],  # touching [2, 5]: 0
            [3, 7],  # identical
            [4, 4],  # zero-length, same point
            [4, 4],  # zero-length, different point
            [4, 4],  # zero-length inside a non-zero interval: 0 / 10
            [0, 3],  # 3 / 10 == 0.3 exactly
        ],
        dtype=float,
    )
    gt = np.array([[5, 15], [0, 10], [2, 3], [2, 5], [3, 7], [4, 4], [5, 5], [0, 10], [0, 10]], dtype=float)
    iou = TG.temporal_iou(pred, gt)
    assert iou.dtype == np.float64 and iou.shape == (9,)
    np.testing.assert_allclose(iou, [1 / 3, 0.2, 0, 0, 1, 1, 0, 0, 0.3])
    assert iou[8] == 0.3
    # symmetric
    np.testing.assert_array_equal(TG.temporal_iou(gt, pred), iou)
    assert TG.temporal_iou(np.zeros((0, 2)), np.zeros((0, 2))).shape == (0,)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_iou_matches_naive_random(seed):
    rng = np.random.default_rng(seed)
    for integer in (False, True):  # integer endpoints: many touching / identical / zero-length cases
        p, g = random_intervals(rng, 300, integer), random_intervals(rng, 300, integer)
        expected = [naive_iou(tuple(p[i]), tuple(g[i])) for i in range(300)]
        np.testing.assert_allclose(TG.temporal_iou(p, g), expected, rtol=1e-12, atol=0)


def test_iou_errors():
    with pytest.raises(ValueError, match="row 1 has start > end"):
        TG.temporal_iou(np.array([[0, 1], [3, 2]]), np.array([[0, 1], [0, 1]]))
    with pytest.raises(ValueError, match=r"gt row 0 has start > end"):
        TG.temporal_iou(np.array([[0, 1]]), np.array([[2, 1]]))
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        TG.temporal_iou(np.array([0, 1]), np.array([0, 1]))
    with pytest.raises(ValueError, match="differ in shape"):
        TG.temporal_iou(np.zeros((2, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="not finite"):
        TG.temporal_iou(np.array([[0, np.nan]]), np.array([[0, 1]]))


# ----------------------------------------------------------------- predict_moment

STARTS = np.arange(0, 10, 2, dtype=float)  # 5 windows of 2 s: [0,2] [2,4] [4,6] [6,8] [8,10]
ENDS = STARTS + 2


def test_moment_single_window():
    assert TG.predict_moment(np.array([3.0]), np.array([5.0]), np.array([0.7])) == (3.0, 5.0)


def test_moment_all_equal_returns_earliest_window():
    assert TG.predict_moment(STARTS, ENDS, np.full(5, 0.4)) == (0.0, 2.0)
    # ties at the best score: the earliest start wins even when listed last
    assert TG.predict_moment(STARTS[::-1], ENDS[::-1], np.array([0.1, 0.9, 0.0, 0.9, 0.1])) == (2.0, 4.0)


def test_moment_run_grows_both_sides():
    # best 0.9 at [4,6]; min 0.1; threshold 0.5 -> neighbours 0.6 and 0.5 (equal to threshold) join
    assert TG.predict_moment(STARTS, ENDS, np.array([0.1, 0.6, 0.9, 0.5, 0.2])) == (2.0, 8.0)
    # ratio 0 -> only the best window; ratio 1 -> every window
    assert TG.predict_moment(STARTS, ENDS, np.array([0.1, 0.6, 0.9, 0.5, 0.2]), ratio=0.0) == (4.0, 6.0)
    assert TG.predict_moment(STARTS, ENDS, np.array([0.1, 0.6, 0.9, 0.5, 0.2]), ratio=1.0) == (0.0, 10.0)


def test_moment_stops_at_low_score_gap():
    # [6,8] scores low, so the high-scoring [8,10] (a repeat elsewhere) is not reached
    assert TG.predict_moment(STARTS, ENDS, np.array([0.8, 0.9, 0.7, 0.0, 0.85])) == (0.0, 6.0)


def test_moment_unsorted_input():
    perm = np.array([3, 0, 4, 2, 1])
    scores = np.array([0.1, 0.6, 0.9, 0.5, 0.2])
    assert TG.predict_moment(STARTS[perm], ENDS[perm], scores[perm]) == (2.0, 8.0)


def test_moment_overlapping_windows():
    # 4 s windows every 2 s: [0,4] [2,6] [4,8] [6,10]; best [2,6], threshold 0.5 -> [4,8] joins, [0,4] does not
    s = np.array([0.0, 2.0, 4.0, 6.0])
    assert TG.predict_moment(s, s + 4, np.array([0.3, 1.0, 0.7, 0.0])) == (2.0, 8.0)
    # a long window containing a later short one: the moment covers the whole run, not just the last window's end
    assert TG.predict_moment(np.array([0.0, 2.0]), np.array([10.0, 4.0]), np.array([1.0, 0.9])) == (0.0, 10.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_moment_matches_naive_random(seed):
    rng = np.random.default_rng(seed)
    for _ in range(200):
        n = int(rng.integers(1, 15))
        starts = rng.integers(0, 20, size=n).astype(float)
        ends = starts + rng.integers(0, 6, size=n)
        if rng.random() < 0.5:
            scores = rng.integers(0, 4, size=n).astype(float)  # ties
        else:
            scores = rng.standard_normal(n)
        ratio = float(rng.choice([0.0, 0.25, 0.5, 0.8, 1.0, rng.random()]))
        got = TG.predict_moment(starts, ends, scores, ratio=ratio)
        assert got == naive_moment(starts.tolist(), ends.tolist(), scores.tolist(), ratio)


def test_moment_errors():
    with pytest.raises(ValueError, match="differ in length"):
        TG.predict_moment(np.array([0.0, 1.0]), np.array([1.0]), np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="scores"):
        TG.predict_moment(np.array([0.0]), np.array([1.0]), np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="no windows"):
        TG.predict_moment(np.array([]), np.array([]), np.array([]))
    with pytest.raises(ValueError, match="finite"):
        TG.predict_moment(np.array([0.0, 1.0]), np.array([1.0, 2.0]), np.array([0.5, np.nan]))
    with pytest.raises(ValueError, match="ratio"):
        TG.predict_moment(np.array([0.0]), np.array([1.0]), np.array([0.5]), ratio=1.5)
    with pytest.raises(ValueError, match="ratio"):
        TG.predict_moment(np.array([0.0]), np.array([1.0]), np.array([0.5]), ratio=-0.1)
    with pytest.raises(ValueError, match="start > end"):
        TG.predict_moment(np.array([2.0]), np.array([1.0]), np.array([0.5]))


# ----------------------------------------------------------------- grounding_metrics


def test_grounding_metrics_hand():
    gt = np.array([[0, 10]] * 5, dtype=float)
    pred = np.array(
        [
            [0, 10],  # IoU 1.0
            [0, 7],  # 0.7 exactly -> counts for R1@0.7
            [0, 5],  # 0.5 exactly
            [0, 3],  # 0.3 exactly
            [20, 30],  # 0.0
        ],
        dtype=float,
    )
    got = TG.grounding_metrics(pred, gt)
    assert set(got) == {"R1@0.3", "R1@0.5", "R1@0.7", "mIoU"}
    assert got["R1@0.3"] == pytest.approx(80.0)
    assert got["R1@0.5"] == pytest.approx(60.0)
    assert got["R1@0.7"] == pytest.approx(40.0)
    assert got["mIoU"] == pytest.approx(100 * (1 + 0.7 + 0.5 + 0.3) / 5)
    assert set(TG.grounding_metrics(pred, gt, thresholds=(0.1,))) == {"R1@0.1", "mIoU"}
    with pytest.raises(ValueError, match="no queries"):
        TG.grounding_metrics(np.zeros((0, 2)), np.zeros((0, 2)))


# ----------------------------------------------------------------- ground_queries


def naive_ground(q, w, wv, ws, we, qv, ratio):
    out = []
    for i in range(len(q)):
        idx = [j for j in range(len(w)) if wv[j] == qv[i]]
        scores = [sum(float(a) * float(b) for a, b in zip(q[i], w[j], strict=True)) for j in idx]
        out.append(naive_moment([ws[j] for j in idx], [we[j] for j in idx], scores, ratio))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("integer", [False, True])
def test_ground_queries_matches_naive(seed, integer):
    rng = np.random.default_rng(seed)
    videos = [f"vid{k}" for k in range(6)]
    wv, ws, we = [], [], []
    for v in videos:
        n = int(rng.integers(1, 12))
        st = rng.permutation(n) * 1.5  # shuffled, overlapping 3 s windows every 1.5 s
        wv += [v] * n
        ws += st.tolist()
        we += (st + 3.0).tolist()
    perm = rng.permutation(len(wv))  # interleave the videos' windows
    wv = [wv[i] for i in perm]
    ws = [ws[i] for i in perm]
    we = [we[i] for i in perm]
    d, Q = 8, 40
    if integer:  # exact dot products with many ties
        w = rng.integers(-2, 3, size=(len(wv), d)).astype(np.float32)
        q = rng.integers(-2, 3, size=(Q, d)).astype(np.float32)
    else:
        w = rng.standard_normal((len(wv), d)).astype(np.float32)
        q = rng.standard_normal((Q, d)).astype(np.float32)
    qv = [videos[int(k)] for k in rng.integers(0, len(videos), size=Q)]
    for ratio in (0.3, 0.5, 1.0):
        got = TG.ground_queries(q, w, wv, np.array(ws), np.array(we), qv, ratio=ratio)
        assert got.dtype == np.float64 and got.shape == (Q, 2)
        expected = naive_ground(q, w, wv, ws, we, qv, ratio)
        np.testing.assert_allclose(got, np.array(expected), rtol=0, atol=1e-12)


def test_ground_queries_hand_and_errors():
    w = np.array([[1, 0], [0, 1], [1, 0], [0, 1]], dtype=np.float32)
    wv = ["a", "a", "b", "b"]
    ws, we = np.array([0.0, 5.0, 0.0, 5.0]), np.array([5.0, 10.0, 5.0, 10.0])
    q = np.array([[0, 1], [1, 0]], dtype=np.float32)
    np.testing.assert_array_equal(TG.ground_queries(q, w, wv, ws, we, ["b", "a"]), [[5.0, 10.0], [0.0, 5.0]])
    assert TG.ground_queries(q[:0], w, wv, ws, we, []).shape == (0, 2)
    with pytest.raises(ValueError, match="'c'"):
        TG.ground_queries(q, w, wv, ws, we, ["a", "c"])
    with pytest.raises(ValueError, match="dims differ"):
        TG.ground_queries(q[:, :1], w, wv, ws, we, ["a", "b"])
    with pytest.raises(ValueError, match="query videos"):
        TG.ground_queries(q, w, wv, ws, we, ["a"])
    with pytest.raises(ValueError, match="window videos"):
        TG.ground_queries(q, w, wv[:3], ws, we, ["a", "b"])
    with pytest.raises(ValueError, match="ratio"):
        TG.ground_queries(q, w, wv, ws, we, ["a", "b"], ratio=2.0)
