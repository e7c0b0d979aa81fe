"""The query service: a FastAPI app over one `SearchSession` (one index version), with a web page.

    tara-batch serve --table ./tara-demo/index.lancedb/videos            # http://127.0.0.1:8000
    curl -s localhost:8000/api/search -H 'content-type: application/json' \\
        -d '{"mode": "text", "text": "a red circle moves left", "k": 5}'

JSON API (OpenAPI at /docs and /openapi.json):
    POST /api/search              text, by example (video_id or video_uri) or composed (+ edit text); filters; k, offset
    POST /api/search/upload       by example or composed with an uploaded video (multipart)
    GET  /api/videos/{id}         the index's row of a video
    GET  /api/thumbnails/{id}?t=  JPEG of the video at t seconds (PyAV, disk cache with a size bound)
    GET  /api/media/{id}          the video: a local file with HTTP Range, an S3 object by a short-lived presigned URL
    GET  /api/status              versions, rows, failures of the index
    GET  /healthz                 liveness (no token needed)
    GET  /metrics                 Prometheus text
    GET  /                        the page (plain HTML/CSS/JS in serve/static, no build step, no CDN)

Safety (`ServiceConfig`): loopback by default; any other host needs a token, checked on every route but /healthz
(`Authorization: Bearer T` or `?token=T`, for <img>/<video> sources). Ids are 32-hex or 404; media and thumbnails open
only what the index recorded for an id. Bodies, uploads, k, offset and text length are bounded; an upload is decoded
in a child process with a timeout. CORS only for configured origins. The model loads once per process; repeated text
queries come from an LRU cache.
"""

# No `from __future__ import annotations` here: FastAPI reads the route signatures' annotations at run time, and the
# request models are defined inside `create_app`.
import hmac
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from tara_batch import schema as S
from tara_batch.errors import ConfigError

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class ServiceConfig:
    table: str = ""
    model: str | None = None  # default: the checkpoint the table records
    version: str | None = None  # default: the live version
    overrides: tuple[str, ...] = ()  # s3.* settings
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: int = 1 << 20  # JSON requests
    max_upload_bytes: int = 64 << 20  # uploaded query videos
    upload_timeout_s: float = 60.0
    thumbnail_dir: str | None = None  # default: <database>/_tara_batch/thumbnails
    thumbnail_cache_bytes: int = 256 << 20
    presign_seconds: int = 300
    text_cache_size: int = 1024

    def __post_init__(self) -> None:
        if not self.table:
            raise ConfigError("--table", "name the index to serve: --table ./index.lancedb/videos")
        if self.host not in LOOPBACK and not self.token:
            raise ConfigError("--token", f"--host {self.host} exposes the index beyond this machine: set --token "
                              "(or TARA_BATCH_TOKEN) so every request must carry it")
        if self.token is not None and len(self.token) < 16:
            raise ConfigError("--token", "use at least 16 characters (e.g. `python -c 'import secrets; "
                              "print(secrets.token_urlsafe(24))'`)")
        for name in ("max_body_bytes", "max_upload_bytes", "thumbnail_cache_bytes", "presign_seconds"):
            if getattr(self, name) <= 0:
                raise ConfigError(name, "must be > 0")


@dataclass
class Metrics:
    registry: Any
    requests: Any
    seconds: Any
    cache_hits: Any

    @classmethod
    def create(cls) -> "Metrics":
        from prometheus_client import CollectorRegistry, Counter, Histogram

        reg = CollectorRegistry()
        buckets = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
        return cls(reg,
                   Counter("tara_batch_serve_requests_total", "HTTP requests", ["route", "status"], registry=reg),
                   Histogram("tara_batch_serve_query_seconds", "query time by part", ["part"], buckets=buckets,
                             registry=reg),
                   Counter("tara_batch_serve_text_cache_hits_total", "text queries answered from the cache",
                           registry=reg))


@dataclass
class Service:
    """What the routes share: the config, the open index, the thumbnail cache, metrics."""

    cfg: ServiceConfig
    session: Any
    thumbs: Any
    metrics: Metrics = field(default_factory=Metrics.create)


class BodyLimit:
    """ASGI middleware: refuse request bodies over a bound (413), whether or not Content-Length is sent."""

    def __init__(self, app, max_body: int, max_upload: int) -> None:
        self.app, self.max_body, self.max_upload = app, max_body, max_upload

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.max_upload if scope["path"].endswith("/upload") else self.max_body
        declared = dict(scope.get("headers") or {}).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return await _too_large(send, limit)
        seen = 0

        async def counting_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _BodyTooLarge()
            return message

        try:
            return await self.app(scope, counting_receive, send)
        except _BodyTooLarge:
            return await _too_large(send, limit)


class _BodyTooLarge(Exception):
    pass


async def _too_large(send, limit: int) -> None:
    import json

    body = json.dumps({"detail": f"request body over {limit} bytes"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def open_service(cfg: ServiceConfig, session=None) -> Service:
    from tara_batch.index.tables import TableRef
    from tara_batch.search.session import SearchSession
    from tara_batch.serve.media import ThumbnailCache

    if session is None:
        session = SearchSession.open(cfg.table, model=cfg.model, overrides=list(cfg.overrides), version=cfg.version)
    session.text_cache_size = cfg.text_cache_size
    session.upload_timeout_s = cfg.upload_timeout_s
    ref = TableRef.parse(cfg.table)
    thumb_dir = cfg.thumbnail_dir
    if thumb_dir is None:
        from tara_batch.io.uris import is_s3
        from tara_batch.models.checkpoint import cache_root

        thumb_dir = str(cache_root() / "thumbnails" / ref.name) if is_s3(ref.db_uri) else \
            f"{ref.db_uri}/_tara_batch/thumbnails/{ref.name}"
    return Service(cfg, session, ThumbnailCache(thumb_dir, cfg.thumbnail_cache_bytes))


def create_app(cfg: ServiceConfig, session=None, service: Service | None = None):
    """The FastAPI app; `session` (a `SearchSession`) or `service` may be given (tests, Ray Serve)."""
    from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
    from fastapi.middleware.cors import CORSMiddleware
    from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
    from fastapi.staticfiles import StaticFiles
    from pydantic import BaseModel, Field

    from tara_batch import __version__
    from tara_batch.search.filters import FilterError, Filters
    from tara_batch.search.session import MAX_K, MAX_OFFSET, MAX_TEXT, Query, QueryError
    from tara_batch.serve import media

    svc = service or open_service(cfg, session)
    app = FastAPI(title="tara-batch", version=__version__, description="Search a TARA video index: text, by "
                  "example, composed (video + edit), moments.")

    def authorised(request: Request) -> None:
        if svc.cfg.token is None:
            return
        header = request.headers.get("authorization", "")
        given = header[7:] if header.lower().startswith("bearer ") else request.query_params.get("token", "")
        if not hmac.compare_digest(given.encode(), svc.cfg.token.encode()):
            raise HTTPException(401, "missing or wrong token", headers={"WWW-Authenticate": "Bearer"})

    auth = [Depends(authorised)]

    @app.middleware("http")
    async def count(request: Request, call_next):
        response = await call_next(request)
        route = request.scope.get("route")
        svc.metrics.requests.labels(getattr(route, "path", "other"), str(response.status_code)).inc()
        return response

    class SearchBody(BaseModel):
        mode: str = Field("text", description="text | video | composed")
        text: str | None = Field(None, max_length=MAX_TEXT, description="the query, or a composed query's edit")
        video_id: str | None = Field(None, description="a video of the index (by example / composed source)")
        video_uri: str | None = Field(None, max_length=4096,
                                      description="any video the server can read (by example / composed source)")
        k: int = Field(12, ge=1, le=MAX_K)
        offset: int = Field(0, ge=0, le=MAX_OFFSET)
        filters: dict[str, Any] | None = None
        group_by_video: bool = False

    def run(q: Query) -> dict[str, Any]:
        try:
            result = svc.session.run(q)
        except (QueryError, FilterError) as exc:
            raise HTTPException(400, str(exc)) from exc
        svc.metrics.seconds.labels("embed").observe(result.embed_ms / 1000)
        svc.metrics.seconds.labels("search").observe(result.search_ms / 1000)
        if result.cached:
            svc.metrics.cache_hits.inc()
        return {"results": [_result_row(r, svc.session.segmented) for r in result.rows],
                "k": q.k, "offset": q.offset, "version": svc.session.version,
                "timings_ms": {"embed": round(result.embed_ms, 3), "search": round(result.search_ms, 3)},
                "cached": result.cached}

    def filters_of(raw: dict[str, Any] | None) -> Filters:
        try:
            return Filters.from_dict(raw)
        except (FilterError, TypeError) as exc:
            raise HTTPException(400, str(exc)) from exc

    @app.post("/api/search", dependencies=auth)
    def search(body: SearchBody) -> dict[str, Any]:
        q = Query(kind=body.mode, text=body.text, video_id=body.video_id, video_uri=body.video_uri, k=body.k,
                  offset=body.offset, filters=filters_of(body.filters), group_by_video=body.group_by_video)
        return run(q)

    @app.post("/api/search/upload", dependencies=auth)
    def search_upload(file: Annotated[UploadFile, File()], mode: Annotated[str, Form()] = "video",
                      text: Annotated[str | None, Form()] = None, k: Annotated[int, Form()] = 12,
                      offset: Annotated[int, Form()] = 0, filters: Annotated[str | None, Form()] = None,
                      group_by_video: Annotated[bool, Form()] = False) -> dict[str, Any]:
        import json

        data = file.file.read(svc.cfg.max_upload_bytes + 1)
        if len(data) > svc.cfg.max_upload_bytes:
            raise HTTPException(413, f"upload over {svc.cfg.max_upload_bytes} bytes")
        if mode not in ("video", "composed"):
            raise HTTPException(400, "an uploaded video is a query by example (mode=video) or composed")
        try:
            raw = json.loads(filters) if filters else None
        except json.JSONDecodeError as exc:
            raise HTTPException(400, f"filters must be a JSON object: {exc}") from exc
        q = Query(kind=mode, text=text, video_bytes=data, k=k, offset=offset, filters=filters_of(raw),
                  group_by_video=group_by_video)
        return run(q)

    def row_of(video_id: str) -> dict[str, Any]:
        row = svc.session.row(video_id)
        if row is None:
            raise HTTPException(404, "no such video in this index")
        return row

    @app.get("/api/videos/{video_id}", dependencies=auth)
    def video(video_id: str) -> dict[str, Any]:
        row = row_of(video_id)
        return {**{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()},
                "media_url": f"/api/media/{video_id}", "thumbnail_url": f"/api/thumbnails/{video_id}"}

    @app.get("/api/thumbnails/{video_id}", dependencies=auth)
    def thumbnail(video_id: str, t: float = 0.0) -> Response:
        if not (0 <= t < 1e6):
            raise HTTPException(400, "t must be a time in seconds >= 0")
        row = row_of(video_id)
        try:
            jpeg = media.thumbnail(svc.thumbs, video_id, row.get(S.ETAG), row[S.URI], t, svc.session.s3)
        except media.MediaError as exc:
            raise HTTPException(404, str(exc)) from exc
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/api/media/{video_id}", dependencies=auth)
    def video_file(video_id: str) -> Response:
        from tara_batch.io.uris import is_s3

        uri = row_of(video_id)[S.URI]
        if is_s3(uri):
            return RedirectResponse(media.presigned_url(uri, svc.session.s3, svc.cfg.presign_seconds), 307)
        try:
            path = media.local_path(uri)
        except media.MediaError as exc:
            raise HTTPException(404, str(exc)) from exc
        return FileResponse(path, media_type=media.media_type(uri))

    @app.get("/api/status", dependencies=auth)
    def status() -> dict[str, Any]:
        from tara_batch.index.status import index_status

        st = index_status(svc.cfg.table, svc.session.s3)
        return {**st, "serving": svc.session.version, "segments": svc.session.segmented,
                "profile": svc.session.profile.name}

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", dependencies=auth)
    def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", dependencies=auth, include_in_schema=False)
    def page() -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):  # never a traceback to the client
        log.exception("error serving %s", request.url.path)
        return JSONResponse({"detail": "internal error"}, status_code=500)

    if svc.cfg.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(svc.cfg.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["authorization", "content-type"])
    app.add_middleware(BodyLimit, max_body=svc.cfg.max_body_bytes, max_upload=svc.cfg.max_upload_bytes)
    app.state.service = svc
    return app


def _result_row(r: dict[str, Any], segmented: bool) -> dict[str, Any]:
    vid = r[S.VIDEO_ID]
    start = r.get(S.SEGMENT_START) if segmented else None
    end = r.get(S.SEGMENT_END) if segmented else None
    duration = r.get(S.DURATION)
    mid = (start + end) / 2 if start is not None and end is not None else \
        (duration / 2 if duration is not None and duration == duration else 0.0)
    created = r.get(S.CREATED_AT)
    return {"video_id": vid, "uri": r[S.URI], "score": float(r["score"]),
            "duration": duration if duration == duration else None, "start": start, "end": end,
            "created_at": created.isoformat() if hasattr(created, "isoformat") else created,
            "thumbnail_url": f"/api/thumbnails/{vid}?t={mid:.2f}",
            "media_url": f"/api/media/{vid}" + (f"#t={start:.2f},{end:.2f}" if start is not None else "")}


def serve_forever(cfg: ServiceConfig) -> None:
    """`tara-batch serve`: uvicorn in this process (the model loads once, here)."""
    import uvicorn

    app = create_app(cfg)
    log.info("serving %s (version %s) on http://%s:%d", cfg.table, app.state.service.session.version, cfg.host,
             cfg.port)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning")


def wait_ready(url: str, timeout_s: float = 30.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
