"""tara-batch: offline, distributed video embedding with TARA on Ray Data and LanceDB.

The package is layered; a module imports only from its own folder or from a layer below it (tests/unit/test_layout.py
checks this, and that the import graph has no cycle):

    cli.py                       the `tara-batch` command: parses arguments, calls the jobs
    serve/                       the query service (FastAPI, a web page, Ray Serve) over search/
    toyworld/                    a procedural world with chiral events and the whole TARA recipe on it (CPU-sized)
    eval/                        benchmark jobs: embed a benchmark, score it, report (+ the checkpoint smoke check)
    embed/  search/  train/      the jobs: Ray Data embed pipeline | queries over a table | Ray Train fine-tune
    config.py  cluster.py        job configs composed from the components' settings; joining or starting Ray
    models/  index/              prompts, checkpoints, embedding backends | LanceDB tables, versions, ANN index
    io/  video/                  object storage (list, read, ids) | frame sampling from encoded bytes
    errors.py  schema.py         exceptions; column names and Arrow schemas (the single source of truth)

Only `embed/` (Ray Data), `train/loop.py` (Ray Train) and `cluster.py` import Ray; everything below them runs in any
process, which is how the unit tests and the Ray actors use it.
"""

__version__ = "0.1.0"
