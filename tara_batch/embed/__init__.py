"""The embed job: listing -> decode (CPU actor pool) -> embed (GPU/CPU actor pool) -> LanceDB, on Ray Data.

The wiring layer: the only folder that imports Ray Data. May import every layer below (`io/`, `video/`, `models/`,
`index/`, `config`, `cluster`); nothing below imports it.

    job.py        run_embed: model version, what to do, stream, deleted objects, settle the version, summary
    dataset.py    pool sizes from the cluster and the Ray Data graph (the only place resources become arguments)
    stages.py     DecodeStage / PreprocessStage / EmbedStage: columnar batch -> batch, bad input -> failed row
    commit.py     the driver loop: commit rows and failures as batches finish, failure-rate guard
    summary.py    RunSummary, saved with the resolved config beside the table
    telemetry.py  Prometheus metrics through ray.util.metrics (driver counts, actor load)
"""
