"""Object storage: URIs and video ids, S3 settings, listing sources and manifests, whole-object reads.

Works on plain URIs (`s3://bucket/key` or an absolute local path), so a listing made on the driver can be shipped to
Ray workers as data and resolved there. May import: `errors`, `schema`. Knows nothing of Ray, video or models.

    uris.py      canonical_uri, video_id_for, is_s3 / split_s3
    s3.py        S3Options: one set of S3 settings for boto3, pyarrow and LanceDB (credentials never logged)
    listing.py   list_videos: local directory / file or s3:// prefix, extension and glob filters
    manifest.py  read_manifest: CSV / TSV / Parquet / JSON(L) / TXT lists of URIs
    reads.py     read_bytes: local or S3, with body retries and range resume tied to the ETag
"""
