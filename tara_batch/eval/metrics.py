"""Pure, vectorised numpy evaluation metrics for TARA (tara-method.md section 5).

Conventions shared by every function here:

* Embeddings are ``[N, d]`` arrays, assumed L2-normalised so cosine similarity == dot product. They are
  coerced to float32 and scores are computed as ``queries @ gallery.T`` in float32, ``chunk`` query rows at a
  time, so peak memory is O(chunk * G) and never O(Q * G) (except for explicit ``[Q, G]`` masks the caller passes).
* Ties: the gallery is ordered by descending score with ties broken by ascending gallery index (a stable sort
  of ``-score``). Ranks and average precision both follow this one order, so they are mutually consistent and
  deterministic. Consequence: a relevant item tied with a lower-index irrelevant item ranks *after* it.
* Ranks are 1-based. ``recall_at_k``/``median_rank``/``average_precision``/``mean_average_precision`` return
  plain fractions/numbers; the benchmark helpers (``retrieval_report``, ``cia_metrics``, ``cia_map``,
  ``rtime_binary``, ``negbench``, ``covr_metrics``) return percentages (x100) as the paper reports them.
* A query with no relevant item has no rank/AP: that is an input error and raises ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "average_precision",
    "cia_galleries",
    "cia_map",
    "cia_metrics",
    "cia_relevant_mask",
    "covr_metrics",
    "mean_average_precision",
    "median_rank",
    "modality_gap",
    "negbench",
    "parse_cia_text_id",
    "recall_at_k",
    "retrieval_ranks",
    "retrieval_report",
    "rtime_binary",
]

DEFAULT_CHUNK = 1024

# Relevance: int array [Q] (one target per query), bool array [Q, G], or a sequence of Q index arrays.
Relevant = np.ndarray | Sequence[np.ndarray] | Sequence[Sequence[int]]


def _emb(name: str, x: np.ndarray, dtype: type = np.float32) -> np.ndarray:
    a = np.asarray(x, dtype=dtype)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D [N, d] array, got shape {a.shape}")
    return a


def paired_matrices(a_name: str, a: np.ndarray, b_name: str, b: np.ndarray,
                    dtype: type = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Two embedding sets as 2-D arrays of `dtype` with the same dim (ValueError naming them otherwise)."""
    x, y = _emb(a_name, a, dtype), _emb(b_name, b, dtype)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"embedding dims differ: {a_name} d={x.shape[1]}, {b_name} d={y.shape[1]}")
    return x, y


def _pair(queries: np.ndarray, gallery: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    q, g = paired_matrices("queries", queries, "gallery", gallery)
    if g.shape[0] == 0:
        raise ValueError("gallery is empty")
    return q, g


def _check_chunk(chunk: int) -> int:
    if int(chunk) < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    return int(chunk)


class _RelevantRows:
    """Normalises the accepted relevance formats and yields dense bool masks for row ranges."""

    def __init__(self, relevant: Relevant, n_queries: int, n_gallery: int):
        self.G = n_gallery
        self.dense: np.ndarray | None = None
        self.lists: list[np.ndarray] | None = None
        self.single: np.ndarray | None = None
        arr = relevant if isinstance(relevant, np.ndarray) else None
        if arr is not None and arr.dtype == bool:
            if arr.shape != (n_queries, n_gallery):
                raise ValueError(f"relevant mask must have shape {(n_queries, n_gallery)}, got {arr.shape}")
            self.dense = arr
            empty = ~arr.any(axis=1)
        elif arr is not None and arr.ndim == 1 and arr.dtype != object:
            if not np.issubdtype(arr.dtype, np.integer):
                raise ValueError(f"single-target relevant must be an integer array, got dtype {arr.dtype}")
            if arr.shape[0] != n_queries:
                raise ValueError(f"relevant has {arr.shape[0]} targets for {n_queries} queries")
            if arr.size and (arr.min() < 0 or arr.max() >= n_gallery):
                raise ValueError(f"relevant gallery index out of range [0, {n_gallery})")
            self.single = arr.astype(np.int64)
            empty = np.zeros(n_queries, dtype=bool)
        else:
            lists = [np.asarray(r, dtype=np.int64).reshape(-1) for r in relevant]
            if len(lists) != n_queries:
                raise ValueError(f"relevant has {len(lists)} entries for {n_queries} queries")
            self.lists = lists
            empty = np.array([r.size == 0 for r in lists], dtype=bool)
        if empty.any():
            raise ValueError(
                f"{int(empty.sum())} queries have no relevant gallery item (first: {int(np.argmax(empty))})"
            )
        if self.lists is not None:
            flat = np.concatenate(self.lists) if self.lists else np.zeros(0, dtype=np.int64)
            if flat.size and (flat.min() < 0 or flat.max() >= n_gallery):
                raise ValueError(f"relevant gallery index out of range [0, {n_gallery})")

    def rows(self, start: int, stop: int) -> np.ndarray:
        if self.dense is not None:
            return self.dense[start:stop]
        if self.single is not None:
            mask = np.zeros((stop - start, self.G), dtype=bool)
            mask[np.arange(stop - start), self.single[start:stop]] = True
            return mask
        part = self.lists[start:stop]
        mask = np.zeros((stop - start, self.G), dtype=bool)
        rows = np.repeat(np.arange(stop - start), [r.size for r in part])
        mask[rows, np.concatenate(part)] = True
        return mask


def retrieval_ranks(
    queries: np.ndarray, gallery: np.ndarray, relevant: Relevant, chunk: int = DEFAULT_CHUNK
) -> np.ndarray:
    """1-based rank of the best-ranked relevant gallery item for each query, as int64 ``[Q]``.

    ``relevant``: int array ``[Q]`` (single target), a sequence of Q gallery-index arrays, or a bool ``[Q, G]``
    mask. Rank = position in the stable descending-score order (ties -> lower gallery index first), computed
    exactly by counting, ``chunk`` queries at a time: ``1 + #{s_j > s*} + #{s_j == s*, j < j*}`` where ``j*`` is
    the earliest relevant item in that order and ``s*`` its score.
    """
    q, g = _pair(queries, gallery)
    chunk = _check_chunk(chunk)
    rel = _RelevantRows(relevant, q.shape[0], g.shape[0])
    out = np.empty(q.shape[0], dtype=np.int64)
    cols = np.arange(g.shape[0])
    for start in range(0, q.shape[0], chunk):
        stop = min(start + chunk, q.shape[0])
        s = q[start:stop] @ g.T
        m = rel.rows(start, stop)
        best = np.where(m, s, -np.inf).max(axis=1, keepdims=True)
        j_best = np.argmax(m & (s == best), axis=1)[:, None]  # first (lowest-index) relevant at the best score
        higher = (s > best).sum(axis=1)
        tied_before = ((s == best) & (cols[None, :] < j_best)).sum(axis=1)
        out[start:stop] = 1 + higher + tied_before
    return out


def recall_at_k(ranks: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict[int, float]:
    """Fraction of queries whose rank is <= k, for each k: ``{k: fraction}`` (not x100)."""
    r = np.asarray(ranks)
    if r.size == 0:
        raise ValueError("no ranks")
    return {int(k): float(np.mean(r <= k)) for k in ks}


def median_rank(ranks: np.ndarray) -> float:
    """Median of the 1-based ranks (numpy median: mean of the two middle values for an even count)."""
    r = np.asarray(ranks)
    if r.size == 0:
        raise ValueError("no ranks")
    return float(np.median(r))


def retrieval_report(
    queries: np.ndarray,
    gallery: np.ndarray,
    relevant: Relevant,
    ks: Sequence[int] = (1, 5, 10),
    chunk: int = DEFAULT_CHUNK,
) -> dict[str, float]:
    """``{"R@k": percent for k in ks, "MdR": median rank}`` for one direction (caller swaps for t2v/v2t)."""
    ranks = retrieval_ranks(queries, gallery, relevant, chunk=chunk)
    report = {f"R@{k}": 100.0 * v for k, v in recall_at_k(ranks, ks).items()}
    report["MdR"] = median_rank(ranks)
    return report


def _ap_rows(scores: np.ndarray, rel: np.ndarray, cand: np.ndarray | None) -> np.ndarray:
    """AP per row of a ``[c, G]`` score block; non-candidates are sorted last and never relevant.

    ``scores`` is consumed (negated in place). AP needs only the ranks of the relevant items, so instead of
    permuting every array by an argsort (four [c, G] 8-byte arrays: 4.4 GiB at c=1024, G=100k), each relevant
    item's rank is counted against one sorted copy: ``1 + #{key < k_j} + #{key == k_j, index < j}``, the stable
    order; the tie term is only computed where a tie exists."""
    key = np.negative(scores, out=scores)
    if cand is not None:
        key[~cand] = np.inf
    ordered = np.sort(key, axis=1)
    out = np.empty(key.shape[0], dtype=np.float64)
    for i in range(key.shape[0]):
        j = np.flatnonzero(rel[i])
        v = key[i, j]
        less = np.searchsorted(ordered[i], v, side="left")
        tied = np.searchsorted(ordered[i], v, side="right") - less
        before = np.zeros(j.size, dtype=np.int64)
        for t in np.flatnonzero(tied > 1):
            before[t] = np.count_nonzero(key[i, : j[t]] == v[t])
        ranks = np.sort(1 + less + before)
        out[i] = float(np.mean(np.arange(1, ranks.size + 1) / ranks))
    return out


def average_precision(scores: np.ndarray, relevant_mask: np.ndarray) -> float:
    """Standard (non-interpolated) AP of one ranking: mean over relevant items of precision at their rank.

    The ranking is ``scores`` descending with ties broken by ascending index (stable sort). Plain fraction.
    E.g. relevance ``[1, 0, 1]`` in rank order -> ``(1/1 + 2/3) / 2``.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    m = np.asarray(relevant_mask, dtype=bool).reshape(-1)
    if s.shape != m.shape:
        raise ValueError(f"scores {s.shape} and relevant_mask {m.shape} differ in length")
    if not m.any():
        raise ValueError("average precision is undefined without a relevant item")
    return float(_ap_rows(s[None, :].copy(), m[None, :], None)[0])


def mean_average_precision(
    queries: np.ndarray,
    gallery: np.ndarray,
    relevant: Relevant,
    candidate_masks: np.ndarray | None = None,
    chunk: int = DEFAULT_CHUNK,
) -> float:
    """Mean over queries of AP (plain fraction), optionally restricting each query's gallery.

    ``relevant``: as in :func:`retrieval_ranks`. ``candidate_masks``: bool ``[Q, G]``; only candidates are ranked
    (AP is computed over the candidate sub-gallery). Every relevant item must be a candidate (else ValueError:
    silently dropping relevant items would inflate AP). Memory: O(chunk * G) per block plus the caller's masks.
    """
    q, g = _pair(queries, gallery)
    chunk = _check_chunk(chunk)
    Q, G = q.shape[0], g.shape[0]
    rel = _RelevantRows(relevant, Q, G)
    if candidate_masks is not None:
        candidate_masks = np.asarray(candidate_masks, dtype=bool)
        if candidate_masks.shape != (Q, G):
            raise ValueError(f"candidate_masks must have shape {(Q, G)}, got {candidate_masks.shape}")
    if Q == 0:
        raise ValueError("no queries")
    total = 0.0
    for start in range(0, Q, chunk):
        stop = min(start + chunk, Q)
        m = rel.rows(start, stop)
        cand = None if candidate_masks is None else candidate_masks[start:stop]
        if cand is not None and (m & ~cand).any():
            bad = start + int(np.argmax((m & ~cand).any(axis=1)))
            raise ValueError(f"query {bad} has a relevant gallery item outside its candidate mask")
        total += float(_ap_rows(q[start:stop] @ g.T, m, cand).sum())
    return total / Q


# --------------------------------------------------------------------------- CiA (Chirality in Action)


def parse_cia_text_id(text_id: str) -> tuple[str, int]:
    """Split a CiA text id ``f"{chiral_triplet_id}_{chiral_label}"`` into ``(chiral_triplet_id, label)``."""
    triplet, sep, label = text_id.rpartition("_")
    if not sep or label not in ("0", "1"):
        raise ValueError(f"CiA text id {text_id!r} is not '<chiral_triplet_id>_<0|1>'")
    return triplet, int(label)


def _cia_defaults(
    ids: Sequence[str], chiral_pairs: Mapping[str, str] | None, labels: Mapping[str, int] | None
) -> tuple[Mapping[str, str], Mapping[str, int]]:
    if chiral_pairs is None or labels is None:
        parsed = {t: parse_cia_text_id(t) for t in ids}
        if chiral_pairs is None:
            chiral_pairs = {t: f"{trip}_{1 - lab}" for t, (trip, lab) in parsed.items()}
        if labels is None:
            labels = {t: lab for t, (_, lab) in parsed.items()}
    return chiral_pairs, labels


def cia_relevant_mask(text_ids: Sequence[str], video_text_ids: Sequence[str]) -> np.ndarray:
    """Bool ``[Q, G]``: video g is relevant to text query q iff it belongs to that text (``video_text_ids[g]``)."""
    vt = np.asarray(list(video_text_ids), dtype=object)
    tq = np.asarray(list(text_ids), dtype=object)
    vocab = {t: i for i, t in enumerate(dict.fromkeys([*tq.tolist(), *vt.tolist()]))}
    qc = np.fromiter((vocab[t] for t in tq), dtype=np.int64, count=tq.size)
    vc = np.fromiter((vocab[t] for t in vt), dtype=np.int64, count=vt.size)
    return qc[:, None] == vc[None, :]


def cia_galleries(
    text_ids: Sequence[str],
    video_text_ids: Sequence[str],
    chiral_pairs: Mapping[str, str] | None = None,
    labels: Mapping[str, int] | None = None,
) -> dict[str, np.ndarray]:
    """CiA candidate galleries as bool ``[Q, G]`` masks, keyed ``"chiral"``, ``"static"``, ``"all"``.

    ``text_ids[q]`` is query q's text id ``f"{chiral_triplet_id}_{chiral_label}"``; ``video_text_ids[g]`` is the
    text id video g depicts. ``chiral_pairs[t]`` = the opposite text id of t, ``labels[t]`` = its chiral_label;
    when omitted both are derived from the id format. Per tara-method:

    * chiral: the query's videos + its opposite's videos;
    * static: the query's videos + videos of every other text with the same chiral_label;
    * all: every video.

    The relevant set (the query's own videos) is :func:`cia_relevant_mask`. Memory: three dense ``Q*G`` bool masks
    (e.g. 5k x 5k -> 75 MB); fine for CiA-sized sets, chunk the queries for much larger ones.
    """
    tq, vt = list(text_ids), list(video_text_ids)
    chiral_pairs, labels = _cia_defaults([*tq, *vt], chiral_pairs, labels)
    missing = [t for t in tq if t not in chiral_pairs]
    if missing:
        raise KeyError(f"no chiral pair for text id(s) {missing[:5]}")
    missing = [t for t in dict.fromkeys([*tq, *vt]) if t not in labels]
    if missing:
        raise KeyError(f"no chiral_label for text id(s) {missing[:5]}")
    own = cia_relevant_mask(tq, vt)
    opposite = cia_relevant_mask([chiral_pairs[t] for t in tq], vt)
    q_lab = np.fromiter((int(labels[t]) for t in tq), dtype=np.int64, count=len(tq))
    v_lab = np.fromiter((int(labels[t]) for t in vt), dtype=np.int64, count=len(vt))
    return {
        "chiral": own | opposite,
        "static": own | (q_lab[:, None] == v_lab[None, :]),
        "all": np.ones((len(tq), len(vt)), dtype=bool),
    }


def cia_map(
    text_emb: np.ndarray,
    video_emb: np.ndarray,
    relevant_mask: np.ndarray,
    candidate_mask: np.ndarray | None,
    chunk: int = DEFAULT_CHUNK,
) -> float:
    """CiA score for one gallery: mean AP over text queries x 100."""
    return 100.0 * mean_average_precision(text_emb, video_emb, relevant_mask, candidate_mask, chunk=chunk)


def cia_metrics(
    text_emb: np.ndarray,
    video_emb: np.ndarray,
    text_ids: Sequence[str],
    video_text_ids: Sequence[str],
    chiral_pairs: Mapping[str, str] | None = None,
    labels: Mapping[str, int] | None = None,
    chunk: int = DEFAULT_CHUNK,
) -> dict[str, float]:
    """``{"chiral", "static", "all"}`` -> mAP x 100 of text->video retrieval (rows of text_emb = text_ids)."""
    t, v = _pair(text_emb, video_emb)
    if t.shape[0] != len(text_ids) or v.shape[0] != len(video_text_ids):
        raise ValueError(
            f"{t.shape[0]} text embeddings for {len(text_ids)} text ids / "
            f"{v.shape[0]} video embeddings for {len(video_text_ids)} video text ids"
        )
    relevant = cia_relevant_mask(text_ids, video_text_ids)
    galleries = cia_galleries(text_ids, video_text_ids, chiral_pairs, labels)
    return {name: cia_map(t, v, relevant, mask, chunk=chunk) for name, mask in galleries.items()}


def cia_chiral_accuracy(
    text_emb: np.ndarray,
    video_emb: np.ndarray,
    text_ids: Sequence[str],
    video_text_ids: Sequence[str],
    chiral_pairs: Mapping[str, str] | None = None,
) -> dict[str, float]:
    """Binary chiral accuracy x 100: for each text query, the fraction of (own video, opposite's video) pairs in
    which its own video scores higher (ties count half), averaged over queries that have both. Chance is 50.

    ``{"accuracy": ..., "queries": n}``; queries without a video of their own or of their opposite are left out.
    """
    t, v = _pair(text_emb, video_emb)
    tq, vt = list(text_ids), list(video_text_ids)
    chiral_pairs, _ = _cia_defaults([*tq, *vt], chiral_pairs, None)
    vt_arr = np.asarray(vt, dtype=object)
    scores = []
    for q, tid in enumerate(tq):
        own = np.flatnonzero(vt_arr == tid)
        opp = np.flatnonzero(vt_arr == chiral_pairs[tid])
        if not len(own) or not len(opp):
            continue
        s = v @ t[q]  # [G]
        diff = s[own][:, None] - s[opp][None, :]  # [own, opposite]
        scores.append(float(np.mean((diff > 0) + 0.5 * (diff == 0))))
    return {"accuracy": 100.0 * float(np.mean(scores)) if scores else float("nan"), "queries": len(scores)}


# --------------------------------------------------------------------------- other benchmarks


def _rowdot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("nd,nd->n", a, b)


def rtime_binary(
    text_fwd: np.ndarray, video_fwd: np.ndarray, video_rev: np.ndarray, text_rev: np.ndarray | None = None
) -> dict[str, float]:
    """RTime binary accuracy x 100 over paired rows (row i of every input is the same clip/caption pair).

    ``t2v``: fraction with ``cos(text_fwd, video_fwd) > cos(text_fwd, video_rev)``; ``v2t`` (only when
    ``text_rev`` is given): fraction with ``cos(video_fwd, text_fwd) > cos(video_fwd, text_rev)``. Strict ``>``:
    a tie counts as a failure (a model that cannot tell the directions apart scores 0, not 100).
    """
    tf, vf, vr = _emb("text_fwd", text_fwd), _emb("video_fwd", video_fwd), _emb("video_rev", video_rev)
    arrays = [tf, vf, vr] if text_rev is None else [tf, vf, vr, _emb("text_rev", text_rev)]
    if len({a.shape for a in arrays}) != 1 or tf.shape[0] == 0:
        raise ValueError(f"rtime inputs must be non-empty and share one shape, got {[a.shape for a in arrays]}")
    out = {"t2v": 100.0 * float(np.mean(_rowdot(tf, vf) > _rowdot(tf, vr)))}
    if text_rev is not None:
        out["v2t"] = 100.0 * float(np.mean(_rowdot(vf, tf) > _rowdot(vf, arrays[3])))
    return out


def negbench(
    q_standard: np.ndarray,
    q_negated: np.ndarray,
    gallery: np.ndarray,
    targets: Relevant,
    k: int = 5,
    chunk: int = DEFAULT_CHUNK,
) -> dict[str, float]:
    """NegBench-style text->video R@k x 100 for the standard and the negated query sets (same targets)."""
    std = retrieval_ranks(q_standard, gallery, targets, chunk=chunk)
    neg = retrieval_ranks(q_negated, gallery, targets, chunk=chunk)
    return {"standard": 100.0 * recall_at_k(std, (k,))[k], "negated": 100.0 * recall_at_k(neg, (k,))[k]}


def covr_metrics(
    query_emb: np.ndarray,
    gallery_emb: np.ndarray,
    target_index: np.ndarray,
    ks: Sequence[int] = (1, 5, 10),
    chunk: int = DEFAULT_CHUNK,
) -> dict[str, float]:
    """CoVR composed retrieval: ``{"R@k": percent}`` of composed queries vs the target-video gallery."""
    ranks = retrieval_ranks(query_emb, gallery_emb, np.asarray(target_index), chunk=chunk)
    return {f"R@{k}": 100.0 * v for k, v in recall_at_k(ranks, ks).items()}


def modality_gap(video_emb: np.ndarray, text_emb: np.ndarray) -> float:
    """Liang et al. 2022 gap: ``|| mean(video) - mean(text) ||_2`` over paired rows (same count, same order).

    Computed in float64 on the embeddings as given (pass L2-normalised ones, as the paper does).
    """
    v = np.asarray(video_emb, dtype=np.float64)
    t = np.asarray(text_emb, dtype=np.float64)
    if v.ndim != 2 or v.shape != t.shape or v.shape[0] == 0:
        raise ValueError(f"modality_gap needs paired non-empty [N, d] arrays, got {v.shape} and {t.shape}")
    return float(np.linalg.norm(v.mean(axis=0) - t.mean(axis=0)))
