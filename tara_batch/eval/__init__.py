"""Evaluation: benchmark readers, metrics (retrieval, mAP, CiA, RTime, NegBench, CoVR, grounding, modality gap),
the eval job and its reports, and the checkpoint smoke check.

May import every layer below, `embed/` (the benchmark's videos go through the embed job) and `search/`.

    job.py         tara-batch eval: embed the benchmark's videos, embed its queries, score, JSON + Markdown report
    benchmarks.py  readers for the CiA, RTime, NegBench, CoVR, Charades-STA and generic layouts
    metrics.py     chunked numpy metrics, each cross-checked against a naive implementation in the tests
    grounding.py   windows -> moment (Charades-STA); plot.py the modality-gap PCA picture (Pillow)
    smoke.py       tara-batch smoke: both backends on a real checkpoint, and the published golden cosines
"""
