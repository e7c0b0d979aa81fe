"""Column names and Arrow schemas: the single source of truth for every table and batch tara-batch writes.

Stages exchange columnar batches (dicts of numpy arrays) keyed by the constants below; the LanceDB tables use the
schemas built here. Change a name here and every stage, sink and test follows.
"""

from __future__ import annotations

import pyarrow as pa

# --- identity of a source object (listing stage) ---
VIDEO_ID = "video_id"  # sha256(uri)[:32]: deterministic, stable across runs and machines
URI = "uri"  # canonical URI: s3://bucket/key or an absolute local path
SIZE = "size"  # bytes
ETAG = "etag"  # S3 ETag, or "mtime:<ns>" for local files

# --- decode stage ---
FRAMES = "frames"  # uint8 [T, H, W, 3] per row (variable shape across rows)
DURATION = "duration"  # seconds (float64), NaN when unknown
FPS = "fps"  # average frame rate (float64), NaN when unknown
NUM_FRAMES = "num_frames"  # frames sampled (int32)
SOURCE_FRAMES = "source_frames"  # frames in the stream (int64)
STATUS = "status"  # "ok" | "failed"
ERROR_STAGE = "error_stage"  # "fetch" | "decode" | "embed"
ERROR_KIND = "error_kind"  # short machine-readable class, e.g. "corrupt", "no_video_stream", "empty"
ERROR_MESSAGE = "error_message"
DECODE_SECONDS = "decode_seconds"  # decode + sample, excluding the wait for the bytes
FETCH_SECONDS = "fetch_seconds"  # reading the object (overlapped with the previous video's decode)
DECODE_NODE = "decode_node"  # Ray node id of the decode actor (run summary: where the work ran)
EMBED_NODE = "embed_node"
DECODED_AT = "decoded_at"  # unix time the decode batch finished (queue wait before embed = embed start - this)

# --- segment mode (decode.segment_s): one row per sliding window of a video ---
SEGMENT_ID = "segment_id"  # "<video_id>:<segment_index>": the table key in segment mode
SEGMENT_INDEX = "segment_index"  # 0-based window number in time order (int32)
SEGMENT_COUNT = "segment_count"  # windows of this video (int32): a video is complete when it has them all
SEGMENT_START = "segment_start"  # seconds (float64)
SEGMENT_END = "segment_end"  # seconds (float64)
SEGMENT_COLUMNS = (SEGMENT_ID, SEGMENT_INDEX, SEGMENT_COUNT, SEGMENT_START, SEGMENT_END)
FIRST_WINDOW = "first_window"  # listing column (segment mode): windows already committed; decoding starts there

# --- preprocess (embed.preprocess=decode_actors): per-video model inputs, built on CPU actors ---
# (column names come from tara_batch.models.preprocess: input_ids, pixel_values_videos, video_grid_thw,
# visual_tokens)

# --- embed stage / output table ---
EMBED_STARTED_AT = "embed_started_at"  # unix time the embed actor began this row's batch
VISUAL_TOKENS = "visual_tokens"
EMBEDDING = "embedding"
MODEL_ID = "model_id"
CREATED_AT = "created_at"
EMBED_SECONDS = "embed_seconds"
ATTEMPT = "attempt"  # 1 for the first failure of a (video, etag), then 2, 3, ...
RETRIABLE = "retriable"

STATUS_OK = "ok"
STATUS_FAILED = "failed"

# Error kinds a rerun retries (up to `failures.max_attempts`): transient by nature. Every other kind (empty,
# corrupt, no_video_stream, unsupported_codec, too_large, not_found, decoder_error) is a property of the object and
# is only retried when the object changes (new size/ETag) or on an explicit `--retry-failed`.
RETRIABLE_KINDS = frozenset({"fetch_error", "embed_error", "decoder_crash"})

# Table-level metadata key (Arrow schema metadata, persisted by Lance).
METADATA_KEY = b"tara_batch"


def listing_schema() -> pa.Schema:
    return pa.schema(
        [
            pa.field(VIDEO_ID, pa.string(), nullable=False),
            pa.field(URI, pa.string(), nullable=False),
            pa.field(SIZE, pa.int64()),
            pa.field(ETAG, pa.string()),
        ]
    )


def segment_fields() -> list[pa.Field]:
    return [
        pa.field(SEGMENT_ID, pa.string(), nullable=False),
        pa.field(SEGMENT_INDEX, pa.int32()),
        pa.field(SEGMENT_COUNT, pa.int32()),
        pa.field(SEGMENT_START, pa.float64()),
        pa.field(SEGMENT_END, pa.float64()),
    ]


VECTOR_DTYPES = {"float32": pa.float32(), "float16": pa.float16()}


def video_table_schema(dim: int, metadata: dict[bytes, bytes] | None = None, *, segments: bool = False,
                       vector_dtype: str = "float32") -> pa.Schema:
    """Schema of an embeddings table: one row per video (or per window in segment mode, keyed by `segment_id`),
    `embedding` a fixed-size vector of `dim` (float32, or float16: half the bytes, `output.vector_dtype`)."""
    return pa.schema(
        [
            *(segment_fields() if segments else []),
            pa.field(VIDEO_ID, pa.string(), nullable=False),
            pa.field(URI, pa.string(), nullable=False),
            pa.field(SIZE, pa.int64()),
            pa.field(ETAG, pa.string()),
            pa.field(DURATION, pa.float64()),
            pa.field(FPS, pa.float64()),
            pa.field(NUM_FRAMES, pa.int32()),
            pa.field(MODEL_ID, pa.string()),
            pa.field(EMBEDDING, pa.list_(VECTOR_DTYPES[vector_dtype], dim)),
            pa.field(CREATED_AT, pa.timestamp("us", tz="UTC")),
        ],
        metadata=metadata,
    )


def failures_table_schema() -> pa.Schema:
    """Schema of the failures table: one row per (video, attempt) that could not be embedded."""
    return pa.schema(
        [
            pa.field(VIDEO_ID, pa.string(), nullable=False),
            pa.field(URI, pa.string(), nullable=False),
            pa.field(SIZE, pa.int64()),
            pa.field(ETAG, pa.string()),
            pa.field(MODEL_ID, pa.string()),
            pa.field(ERROR_STAGE, pa.string()),
            pa.field(ERROR_KIND, pa.string()),
            pa.field(ERROR_MESSAGE, pa.string()),
            pa.field(ATTEMPT, pa.int32()),
            pa.field(RETRIABLE, pa.bool_()),
            pa.field(CREATED_AT, pa.timestamp("us", tz="UTC")),
        ]
    )
