"""Eval metrics agree with naive loop implementations, hand-computed answers, and tara-method's CiA galleries."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tara_batch.eval import metrics as M

# ----------------------------------------------------------------- naive, independent reference implementations


def naive_scores(q, g):
    return [[sum(float(a) * float(b) for a, b in zip(qi, gj, strict=True)) for gj in g] for qi in q]


def naive_order(scores):
    """Gallery indices by descending score, ties -> lower index first."""
    return sorted(range(len(scores)), key=lambda j: (-scores[j], j))


def naive_rank(scores, relevant):
    for pos, j in enumerate(naive_order(scores), start=1):
        if j in relevant:
            return pos
    raise AssertionError("no relevant item")


def naive_ap(scores, relevant, candidates=None):
    order = [j for j in naive_order(scores) if candidates is None or j in candidates]
    hits, precisions = 0, []
    for pos, j in enumerate(order, start=1):
        if j in relevant:
            hits += 1
            precisions.append(hits / pos)
    return sum(precisions) / len(precisions)


def unit(rng, n, d):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def random_relevant(rng, Q, G, max_rel=4):
    return [rng.choice(G, size=rng.integers(1, max_rel + 1), replace=False) for _ in range(Q)]


# ----------------------------------------------------------------- ranks / recall / median


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ranks_match_naive_multi_relevant(seed):
    rng = np.random.default_rng(seed)
    q, g = unit(rng, 37, 16), unit(rng, 53, 16)
    rel = random_relevant(rng, 37, 53)
    s = naive_scores(q, g)
    expected = [naive_rank(s[i], set(rel[i].tolist())) for i in range(37)]
    assert M.retrieval_ranks(q, g, rel, chunk=8).tolist() == expected
    # the same relevance as a dense bool mask gives the same ranks
    mask = np.zeros((37, 53), dtype=bool)
    for i, r in enumerate(rel):
        mask[i, r] = True
    assert M.retrieval_ranks(q, g, mask, chunk=5).tolist() == expected


def test_ranks_single_target_and_chunking():
    rng = np.random.default_rng(3)
    q, g = unit(rng, 101, 12), unit(rng, 64, 12)
    tgt = rng.integers(0, 64, size=101)
    s = naive_scores(q, g)
    expected = [naive_rank(s[i], {int(tgt[i])}) for i in range(101)]
    full = M.retrieval_ranks(q, g, tgt, chunk=1024)
    assert full.tolist() == expected
    for chunk in (1, 7, 100, 101):
        np.testing.assert_array_equal(M.retrieval_ranks(q, g, tgt, chunk=chunk), full)


def test_ranks_ties_follow_stable_index_order():
    # integer-valued vectors: every dot product is exact, so ties are real and identical in both implementations
    rng = np.random.default_rng(4)
    q = rng.integers(-1, 2, size=(40, 4)).astype(np.float32)
    g = rng.integers(-1, 2, size=(30, 4)).astype(np.float32)
    rel = random_relevant(rng, 40, 30, max_rel=3)
    s = naive_scores(q, g)
    assert len({round(v, 6) for v in s[0]}) < 30  # there are ties
    expected = [naive_rank(s[i], set(rel[i].tolist())) for i in range(40)]
    assert M.retrieval_ranks(q, g, rel, chunk=6).tolist() == expected


def test_ranks_hand_example():
    q = np.array([[1.0, 0.0]], dtype=np.float32)
    g = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0], [0.6, 0.8]], dtype=np.float32)  # scores 0, 1, 1, 0.6
    assert M.retrieval_ranks(q, g, np.array([2])).tolist() == [2]  # tie with index 1, which goes first
    assert M.retrieval_ranks(q, g, np.array([1])).tolist() == [1]
    assert M.retrieval_ranks(q, g, np.array([0])).tolist() == [4]
    assert M.retrieval_ranks(q, g, [np.array([0, 3])]).tolist() == [3]


def test_recall_and_median_by_counting():
    rng = np.random.default_rng(5)
    ranks = rng.integers(1, 30, size=99)
    got = M.recall_at_k(ranks, (1, 5, 10))
    for k in (1, 5, 10):
        assert got[k] == pytest.approx(sum(1 for r in ranks if r <= k) / len(ranks))
    srt = sorted(ranks.tolist())
    assert M.median_rank(ranks) == srt[49]
    assert M.median_rank(np.array([1, 2, 4, 9])) == 3.0
    assert M.recall_at_k(np.array([1, 2, 6, 11]), (1, 5, 10)) == {1: 0.25, 5: 0.5, 10: 0.75}


def test_retrieval_report_percent():
    q = np.eye(3, dtype=np.float32)
    g = np.eye(3, dtype=np.float32)
    rep = M.retrieval_report(q, g, np.array([0, 1, 2]), ks=(1, 5, 10))
    assert rep == {"R@1": 100.0, "R@5": 100.0, "R@10": 100.0, "MdR": 1.0}


def test_empty_relevant_rejected():
    q, g = np.eye(2, dtype=np.float32), np.eye(2, dtype=np.float32)
    with pytest.raises(ValueError, match="no relevant"):
        M.retrieval_ranks(q, g, [np.array([0]), np.array([], dtype=int)])
    with pytest.raises(ValueError, match="out of range"):
        M.retrieval_ranks(q, g, np.array([0, 2]))


# ----------------------------------------------------------------- AP / mAP


def test_average_precision_hand():
    assert M.average_precision(np.array([0.9, 0.5, 0.1]), np.array([1, 0, 1], bool)) == pytest.approx((1 + 2 / 3) / 2)
    assert M.average_precision(np.array([0.1, 0.5, 0.9]), np.array([1, 0, 0], bool)) == pytest.approx(1 / 3)
    # tie: stable index order puts index 0 (irrelevant) before index 1 (relevant)
    assert M.average_precision(np.array([0.5, 0.5]), np.array([0, 1], bool)) == pytest.approx(0.5)
    assert M.average_precision(np.array([0.5, 0.5]), np.array([1, 0], bool)) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        M.average_precision(np.array([0.5]), np.array([False]))


@pytest.mark.parametrize("seed", [0, 1])
def test_average_precision_matches_naive_with_ties(seed):
    rng = np.random.default_rng(seed)
    for _ in range(50):
        n = int(rng.integers(1, 25))
        scores = rng.integers(0, 5, size=n).astype(np.float64)  # many ties
        rel = rng.random(n) < 0.3
        if not rel.any():
            rel[rng.integers(n)] = True
        expected = naive_ap(scores.tolist(), set(np.flatnonzero(rel).tolist()))
        assert M.average_precision(scores, rel) == pytest.approx(expected)


@pytest.mark.parametrize("seed", [0, 1])
def test_map_matches_naive_with_candidates_and_chunking(seed):
    rng = np.random.default_rng(seed)
    Q, G = 29, 41
    q, g = unit(rng, Q, 8), unit(rng, G, 8)
    rel = random_relevant(rng, Q, G)
    cand = rng.random((Q, G)) < 0.5
    for i, r in enumerate(rel):
        cand[i, r] = True
    s = naive_scores(q, g)
    exp_all = sum(naive_ap(s[i], set(rel[i].tolist())) for i in range(Q)) / Q
    exp_cand = sum(naive_ap(s[i], set(rel[i].tolist()), set(np.flatnonzero(cand[i]).tolist())) for i in range(Q)) / Q
    assert M.mean_average_precision(q, g, rel) == pytest.approx(exp_all)
    for chunk in (1, 4, 29, 1024):
        assert M.mean_average_precision(q, g, rel, cand, chunk=chunk) == pytest.approx(exp_cand)
    bad = cand.copy()
    bad[0, rel[0][0]] = False
    with pytest.raises(ValueError, match="outside its candidate mask"):
        M.mean_average_precision(q, g, rel, bad)


def test_map_ties_integer_embeddings():
    rng = np.random.default_rng(9)
    q = rng.integers(-1, 2, size=(20, 3)).astype(np.float32)
    g = rng.integers(-1, 2, size=(25, 3)).astype(np.float32)
    rel = random_relevant(rng, 20, 25, max_rel=3)
    s = naive_scores(q, g)
    expected = sum(naive_ap(s[i], set(rel[i].tolist())) for i in range(20)) / 20
    assert M.mean_average_precision(q, g, rel, chunk=3) == pytest.approx(expected)


# ----------------------------------------------------------------- CiA

TEXTS = ["a_0", "a_1", "b_0", "b_1"]
VIDEOS = ["a_0", "a_0", "a_1", "a_1", "b_0", "b_0", "b_1", "b_1"]  # 2 videos per text


def _rows(*idx_lists):
    m = np.zeros((len(idx_lists), 8), dtype=bool)
    for i, idx in enumerate(idx_lists):
        m[i, list(idx)] = True
    return m


def test_cia_galleries_tiny_hand_made():
    pairs = {"a_0": "a_1", "a_1": "a_0", "b_0": "b_1", "b_1": "b_0"}
    labels = {"a_0": 0, "a_1": 1, "b_0": 0, "b_1": 1}
    gal = M.cia_galleries(TEXTS, VIDEOS, pairs, labels)
    assert set(gal) == {"chiral", "static", "all"}
    np.testing.assert_array_equal(gal["chiral"], _rows(range(0, 4), range(0, 4), range(4, 8), range(4, 8)))
    np.testing.assert_array_equal(gal["static"], _rows([0, 1, 4, 5], [2, 3, 6, 7], [0, 1, 4, 5], [2, 3, 6, 7]))
    np.testing.assert_array_equal(gal["all"], np.ones((4, 8), dtype=bool))
    np.testing.assert_array_equal(M.cia_relevant_mask(TEXTS, VIDEOS), _rows([0, 1], [2, 3], [4, 5], [6, 7]))
    # pairs and labels default to the f"{chiral_triplet_id}_{chiral_label}" id format
    derived = M.cia_galleries(TEXTS, VIDEOS)
    for k in gal:
        np.testing.assert_array_equal(derived[k], gal[k])


def test_cia_galleries_match_naive_definition():
    rng = np.random.default_rng(11)
    texts = [f"t{i}_{lab}" for i in range(6) for lab in (0, 1)]
    videos = [texts[int(j)] for j in rng.integers(0, len(texts), size=40)]
    gal = M.cia_galleries(texts, videos)
    for qi, t in enumerate(texts):
        trip, lab = t.rsplit("_", 1)
        opp = f"{trip}_{1 - int(lab)}"
        for gi, v in enumerate(videos):
            assert gal["chiral"][qi, gi] == (v in (t, opp))
            assert gal["static"][qi, gi] == (v == t or v.rsplit("_", 1)[1] == lab)


def test_cia_metrics_hand_and_naive():
    # perfect embeddings: each text equals its videos' embedding -> every gallery scores 100
    basis = np.eye(4, dtype=np.float32)
    text_emb = basis
    video_emb = basis[[0, 0, 1, 1, 2, 2, 3, 3]]
    assert M.cia_metrics(text_emb, video_emb, TEXTS, VIDEOS) == {"chiral": 100.0, "static": 100.0, "all": 100.0}

    rng = np.random.default_rng(12)
    t, v = unit(rng, 4, 6), unit(rng, 8, 6)
    got = M.cia_metrics(t, v, TEXTS, VIDEOS, chunk=3)
    s = naive_scores(t, v)
    own = {q: {gi for gi, x in enumerate(VIDEOS) if x == q} for q in TEXTS}
    opp = {"a_0": "a_1", "a_1": "a_0", "b_0": "b_1", "b_1": "b_0"}
    lab = {q: q[-1] for q in TEXTS}
    for name, cand_of in {
        "chiral": lambda q: own[q] | own[opp[q]],
        "static": lambda q: {gi for gi, x in enumerate(VIDEOS) if lab[x] == lab[q]},
        "all": lambda q: set(range(8)),
    }.items():
        expected = 100 * sum(naive_ap(s[i], own[q], cand_of(q)) for i, q in enumerate(TEXTS)) / 4
        assert got[name] == pytest.approx(expected), name


def test_cia_bad_id_rejected():
    with pytest.raises(ValueError, match="not '<chiral_triplet_id>_<0|1>'"):
        M.cia_galleries(["nolabel"], ["nolabel"])


# ----------------------------------------------------------------- RTime / NegBench / CoVR / modality gap


def test_rtime_binary_hand_and_naive():
    tf = np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32)
    vf = np.array([[1, 0], [0, 1], [0, 1]], dtype=np.float32)
    vr = np.array([[0, 1], [1, 0], [0, 1]], dtype=np.float32)  # row 2 ties -> counts as a failure
    tr = np.array([[0, 1], [0, 1], [1, 0]], dtype=np.float32)
    out = M.rtime_binary(tf, vf, vr, tr)
    assert out["t2v"] == pytest.approx(100 / 3)
    assert out["v2t"] == pytest.approx(200 / 3)  # rows 0 and 2 prefer the forward text; row 1 does not
    assert set(M.rtime_binary(tf, vf, vr)) == {"t2v"}

    rng = np.random.default_rng(13)
    a, b, c, d = (unit(rng, 50, 8) for _ in range(4))
    dot = lambda x, y: sum(float(i) * float(j) for i, j in zip(x, y, strict=True))  # noqa: E731
    t2v = 100 * sum(dot(a[i], b[i]) > dot(a[i], c[i]) for i in range(50)) / 50
    v2t = 100 * sum(dot(b[i], a[i]) > dot(b[i], d[i]) for i in range(50)) / 50
    assert M.rtime_binary(a, b, c, d) == pytest.approx({"t2v": t2v, "v2t": v2t})


def test_negbench_and_covr_match_naive():
    rng = np.random.default_rng(14)
    qs, qn, g = unit(rng, 60, 10), unit(rng, 60, 10), unit(rng, 45, 10)
    tgt = rng.integers(0, 45, size=60)
    ss, sn = naive_scores(qs, g), naive_scores(qn, g)
    r_std = [naive_rank(ss[i], {int(tgt[i])}) for i in range(60)]
    r_neg = [naive_rank(sn[i], {int(tgt[i])}) for i in range(60)]
    nb = M.negbench(qs, qn, g, tgt, k=5, chunk=7)
    assert nb["standard"] == pytest.approx(100 * sum(r <= 5 for r in r_std) / 60)
    assert nb["negated"] == pytest.approx(100 * sum(r <= 5 for r in r_neg) / 60)
    cv = M.covr_metrics(qs, g, tgt)
    assert cv == pytest.approx({f"R@{k}": 100 * sum(r <= k for r in r_std) / 60 for k in (1, 5, 10)})


def test_modality_gap():
    rng = np.random.default_rng(15)
    x = unit(rng, 30, 8)
    assert M.modality_gap(x, x) == 0.0
    v = np.array([[1, 0], [1, 0]], dtype=np.float32)
    t = np.array([[0, 1], [0, 1]], dtype=np.float32)
    assert M.modality_gap(v, t) == pytest.approx(math.sqrt(2))
    y = unit(rng, 30, 8)
    mv = [sum(float(x[i][k]) for i in range(30)) / 30 for k in range(8)]
    mt = [sum(float(y[i][k]) for i in range(30)) / 30 for k in range(8)]
    assert M.modality_gap(x, y) == pytest.approx(math.sqrt(sum((a - b) ** 2 for a, b in zip(mv, mt, strict=True))))
    with pytest.raises(ValueError):
        M.modality_gap(x, y[:10])


def test_large_chunked_equals_unchunked_smoke():
    rng = np.random.default_rng(16)
    q, g = unit(rng, 2100, 32), unit(rng, 300, 32)
    tgt = rng.integers(0, 300, size=2100)
    a = M.retrieval_ranks(q, g, tgt)  # default chunk 1024 -> 3 chunks
    b = M.retrieval_ranks(q, g, tgt, chunk=2100)
    np.testing.assert_array_equal(a, b)
    assert M.mean_average_precision(q, g, tgt, chunk=500) == pytest.approx(M.mean_average_precision(q, g, tgt))


# ----------------------------------------------------------------- AP / mAP vs scikit-learn (tie-free)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_average_precision_matches_sklearn(seed):
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    for _ in range(40):
        n = int(rng.integers(2, 60))
        scores = rng.random(n)  # continuous: tie-free, so sklearn's tie handling does not matter
        assert np.unique(scores).size == n
        rel = np.zeros(n, dtype=bool)
        rel[rng.choice(n, size=int(rng.integers(1, max(2, n // 3) + 1)), replace=False)] = True
        assert M.average_precision(scores, rel) == pytest.approx(sk.average_precision_score(rel, scores))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mean_average_precision_matches_sklearn(seed):
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    Q, G = 23, 57
    q, g = unit(rng, Q, 12), unit(rng, G, 12)
    rel = random_relevant(rng, Q, G, max_rel=6)
    mask = np.zeros((Q, G), dtype=bool)
    for i, r in enumerate(rel):
        mask[i, r] = True
    s = q @ g.T  # the same float32 scores mean_average_precision computes
    assert all(np.unique(row).size == G for row in s)  # tie-free
    expected = float(np.mean([sk.average_precision_score(mask[i], s[i]) for i in range(Q)]))
    for chunk in (1, 5, 1024):
        assert M.mean_average_precision(q, g, rel, chunk=chunk) == pytest.approx(expected)
    assert M.mean_average_precision(q, g, mask, chunk=4) == pytest.approx(expected)


def test_cia_chiral_accuracy_by_hand_and_naive():
    # two triplets; text a_0 has two videos, its twin a_1 one; b_1 has no twin video (left out)
    texts = ["a_0", "a_1", "b_1"]
    videos = ["a_0", "a_0", "a_1", "b_1"]
    t = np.eye(4, dtype=np.float32)[:3]
    v = np.array([[1, 0, 0, 0], [0.5, 0.5, 0, 0], [0.8, 0.6, 0, 0], [0, 0, 1, 0]], np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    got = M.cia_chiral_accuracy(t, v, texts, videos)
    # a_0: own scores 1.0 and 0.707 vs opposite 0.8 -> 1 of 2; a_1: own 0.6 vs 0 and 0.707 -> 1 of 2
    assert got == {"accuracy": 50.0, "queries": 2}
    rng = np.random.default_rng(0)
    tid = [f"{i}_{j}" for i in range(6) for j in (0, 1)]
    vid = [x for x in tid for _ in range(int(rng.integers(1, 4)))]
    te, ve = rng.normal(size=(len(tid), 8)), rng.normal(size=(len(vid), 8))
    te /= np.linalg.norm(te, axis=1, keepdims=True)
    ve /= np.linalg.norm(ve, axis=1, keepdims=True)
    naive = []
    for q, x in enumerate(tid):
        opp = x[:-1] + str(1 - int(x[-1]))
        own = [g for g, y in enumerate(vid) if y == x]
        other = [g for g, y in enumerate(vid) if y == opp]
        pairs = [(float(te[q] @ ve[a]), float(te[q] @ ve[b])) for a in own for b in other]
        naive.append(sum(1.0 if s > o else 0.5 if s == o else 0.0 for s, o in pairs) / len(pairs))
    assert M.cia_chiral_accuracy(te, ve, tid, vid)["accuracy"] == pytest.approx(100 * np.mean(naive))
