"""Index: the LanceDB side. Tables of one model version each, the failure ledger, versions and the alias, search.

May import: `errors`, `schema`, `io/`. Knows nothing of decoding, models or Ray: rows in, rows out.

    tables.py    TableRef (`<database>/<table>`), connect (local or s3://), table metadata
    writer.py    VideoTableWriter: merge-insert commits keyed on video_id (segment_id), failures, done ids
    ann.py       the cosine ANN index (build, incremental update) and top-k vector search
    catalog.py   model versions of an index, their state, and the live one (an atomic switch)
    status.py    what `tara-batch status` and `failures` print
"""
