"""The HTTP service on a real index: every endpoint, every query kind, filters, pagination, and hostile inputs.

Injection tries must give a correct filtered result or a clear 400, never more rows; traversal tries never open a
file; hostile uploads give a 4xx and the server stays alive.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tara_batch import schema as S
from tara_batch.serve.app import ServiceConfig, create_app

pytestmark = pytest.mark.integration

TOKEN = "t0ken-for-the-tests-only"


@pytest.fixture(scope="module")
def client(served_index, service_session, tmp_path_factory):
    from fastapi.testclient import TestClient

    cfg = ServiceConfig(table=served_index, thumbnail_dir=str(tmp_path_factory.mktemp("thumbs")),
                        thumbnail_cache_bytes=200_000, max_upload_bytes=2_000_000, max_body_bytes=20_000)
    return TestClient(create_app(cfg, session=service_session))


@pytest.fixture(scope="module")
def rows(service_session):
    return service_session.table.to_arrow().select([S.VIDEO_ID, S.URI, S.DURATION]).to_pylist()


def test_text_search_pagination_and_cache(client, rows):
    body = {"mode": "text", "text": "a red circle moves from left to right", "k": 5}
    first = client.post("/api/search", json=body).json()
    assert len(first["results"]) == 5 and first["cached"] is False
    scores = [r["score"] for r in first["results"]]
    assert scores == sorted(scores, reverse=True)
    again = client.post("/api/search", json=body).json()
    assert again["cached"] is True and [r["video_id"] for r in again["results"]] == \
        [r["video_id"] for r in first["results"]]
    page2 = client.post("/api/search", json={**body, "offset": 5}).json()["results"]
    every = client.post("/api/search", json={**body, "k": 10}).json()["results"]
    assert [r["video_id"] for r in first["results"] + page2] == [r["video_id"] for r in every]
    assert len(rows) == 22


def test_by_example_uses_the_stored_vector(client, rows):
    vid = rows[3][S.VIDEO_ID]
    res = client.post("/api/search", json={"mode": "video", "video_id": vid, "k": 3}).json()["results"]
    assert res[0]["video_id"] == vid and res[0]["score"] == pytest.approx(1.0, abs=1e-5)
    by_uri = client.post("/api/search", json={"mode": "video", "video_uri": rows[3][S.URI], "k": 3}).json()
    assert by_uri["results"][0]["video_id"] == vid


def test_composed_query_is_the_composed_embedding(client, rows, service_session):
    vid, uri = rows[1][S.VIDEO_ID], rows[1][S.URI]
    res = client.post("/api/search", json={"mode": "composed", "video_id": vid, "text": "make it go the other way",
                                           "k": 22}).json()["results"]
    frames = service_session._frames(uri=uri)
    q = service_session.embedder.embed_composed([frames], ["make it go the other way"])[0]
    table = {r[S.VIDEO_ID]: np.asarray(r[S.EMBEDDING]) for r in
             service_session.table.to_arrow().select([S.VIDEO_ID, S.EMBEDDING]).to_pylist()}
    expected = sorted(table, key=lambda v: -float(table[v] @ q))
    assert [r["video_id"] for r in res] == expected


def test_filters_restrict_and_match_a_direct_scan(client, rows):
    durations = sorted(r[S.DURATION] for r in rows)
    lo, hi = durations[5], durations[15]
    res = client.post("/api/search", json={"mode": "text", "text": "x", "k": 100,
                                           "filters": {"duration_min": lo, "duration_max": hi}}).json()["results"]
    assert {r["video_id"] for r in res} == {r[S.VIDEO_ID] for r in rows if lo <= r[S.DURATION] <= hi}
    one = rows[0][S.URI]
    prefix = client.post("/api/search", json={"mode": "text", "text": "x", "k": 100,
                                              "filters": {"uri_prefix": one}}).json()["results"]
    assert [r["uri"] for r in prefix] == [one]
    name = Path(one).name
    glob = client.post("/api/search", json={"mode": "text", "text": "x", "k": 100,
                                            "filters": {"uri_glob": f"**/{name}"}}).json()["results"]
    assert [r["uri"] for r in glob] == [one]
    future = client.post("/api/search", json={"mode": "text", "text": "x", "k": 100,
                                              "filters": {"created_after": "2999-01-01T00:00:00Z"}}).json()
    assert future["results"] == []
    past = client.post("/api/search", json={"mode": "text", "text": "x", "k": 100,
                                            "filters": {"created_before": "2999-01-01T00:00:00Z"}}).json()
    assert len(past["results"]) == len(rows)


@pytest.mark.parametrize("hostile", ["' OR 1=1 --", "x'); DROP TABLE videos; --", "a''b", "back\\slash'",
                                     "\\' OR 1=1 --", "üñí©ødé ' OR 'a'='a", "%", "_", ".*", "[a-z", "\u202e' OR 1=1"])
def test_injection_tries_never_widen_the_result(client, rows, hostile):
    for field in ("uri_prefix", "uri_glob"):
        r = client.post("/api/search", json={"mode": "text", "text": "x", "k": 100, "filters": {field: hostile}})
        if r.status_code == 400:
            assert "filter" in r.json()["detail"]
            continue
        assert r.status_code == 200
        uris = [x["uri"] for x in r.json()["results"]]
        if field == "uri_prefix":
            assert all(u.startswith(hostile) for u in uris)
        else:  # exactly what the glob matches by our own (Python) reading of it
            import re

            from tara_batch.io.listing import glob_pattern

            assert all(re.fullmatch(glob_pattern(hostile), u) for u in uris)
        assert len(uris) < len(rows)  # never everything


@pytest.mark.parametrize("bad", [{"uri_prefix": "a\x00b"}, {"uri_glob": "x\ny"}, {"duration_min": "1 OR 1=1"},
                                 {"duration_min": float("inf")}, {"created_after": "yesterday' OR 1=1"},
                                 {"video_id = 'x' OR 1": 1}, {"window_start_min": 1.0}])
def test_bad_filter_values_are_a_clear_400(client, bad):
    import json

    r = client.post("/api/search", content=json.dumps({"mode": "text", "text": "x", "filters": bad},
                                                      allow_nan=True), headers={"content-type": "application/json"})
    assert r.status_code in (400, 422), r.text
    assert "filter" in r.text or "duration_min" in r.text


@pytest.mark.parametrize("body", [{"mode": "text", "text": "x", "k": 0}, {"mode": "text", "text": "x", "k": 101},
                                  {"mode": "text", "text": "x", "offset": 5000}, {"mode": "text", "text": "y" * 1001},
                                  {"mode": "sing", "text": "x"}, {"mode": "video"}, {"mode": "composed",
                                                                                     "video_id": "0" * 32},
                                  {"mode": "video", "video_id": "../../etc/passwd"}])
def test_bounds_and_bad_queries(client, body):
    assert client.post("/api/search", json=body).status_code in (400, 422)


def test_video_thumbnail_and_media(client, rows, tmp_path):
    vid, uri = rows[2][S.VIDEO_ID], rows[2][S.URI]
    meta = client.get(f"/api/videos/{vid}").json()
    assert meta[S.URI] == uri and meta["media_url"] == f"/api/media/{vid}"
    thumb = client.get(f"/api/thumbnails/{vid}", params={"t": 0.3})
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert thumb.content[:2] == b"\xff\xd8"
    import io

    from PIL import Image

    assert Image.open(io.BytesIO(thumb.content)).width == 320
    full = client.get(f"/api/media/{vid}")
    assert full.status_code == 200 and full.content == Path(uri).read_bytes()
    part = client.get(f"/api/media/{vid}", headers={"Range": "bytes=10-99"})
    assert part.status_code == 206 and part.content == Path(uri).read_bytes()[10:100]
    assert part.headers["content-range"].startswith("bytes 10-99/")


def test_thumbnail_cache_stays_within_its_bound(client, rows):
    svc = client.app.state.service
    for r in rows[:10]:
        for t in (0.0, 0.2, 0.4):
            assert client.get(f"/api/thumbnails/{r[S.VIDEO_ID]}", params={"t": t}).status_code == 200
    assert svc.thumbs.size() <= svc.cfg.thumbnail_cache_bytes


@pytest.mark.parametrize("path", ["../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "/etc/passwd",
                                  "....//....//etc/passwd", "0" * 32, "A" * 32])
def test_traversal_tries_never_open_a_file(client, path):
    for route in ("/api/media/", "/api/thumbnails/", "/api/videos/"):
        r = client.get(route + path)
        assert r.status_code == 404, (route, path, r.status_code)
        assert b"root:" not in r.content


def test_a_swapped_in_symlink_is_refused(client, rows, service_session, tmp_path):
    # Replace an indexed file by a symlink to a file outside the archive: the id still names it, but it no longer
    # is the file that was indexed, so nothing is served.
    vid, uri = rows[5][S.VIDEO_ID], Path(rows[5][S.URI])
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0")
    backup = uri.with_suffix(".bak")
    os.replace(uri, backup)
    try:
        os.symlink(secret, uri)
        for route in ("/api/media/", "/api/thumbnails/"):
            r = client.get(route + vid)
            assert r.status_code == 404 and b"root:" not in r.content
    finally:
        uri.unlink()
        os.replace(backup, uri)


def test_hostile_uploads_are_4xx_and_the_server_lives(client, rows, tmp_path):
    good = Path(rows[0][S.URI]).read_bytes()
    for data in (good[: len(good) // 3], os.urandom(5000), b"", b"\x00" * 100):
        r = client.post("/api/search/upload", files={"file": ("x.mp4", data, "video/mp4")}, data={"k": "3"})
        assert r.status_code == 400, r.text
    big = client.post("/api/search/upload", files={"file": ("x.mp4", b"0" * 2_100_000, "video/mp4")})
    assert big.status_code == 413
    ok = client.post("/api/search/upload", files={"file": ("x.mp4", good, "video/mp4")}, data={"k": "3"})
    assert ok.status_code == 200 and ok.json()["results"][0]["video_id"] == rows[0][S.VIDEO_ID]
    composed = client.post("/api/search/upload", files={"file": ("x.mp4", good, "video/mp4")},
                           data={"mode": "composed", "text": "make it red", "k": "3"})
    assert composed.status_code == 200 and len(composed.json()["results"]) == 3
    assert client.get("/healthz").json() == {"status": "ok"}


def test_body_bound(client):
    r = client.post("/api/search", content=b'{"mode": "text", "text": "' + b"x" * 30_000 + b'"}',
                    headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_status_health_metrics_openapi_and_page(client):
    st = client.get("/api/status").json()
    assert st["serving"] and st["versions"][0]["rows"] == 22 and st["segments"] is False
    assert client.get("/healthz").status_code == 200
    metrics = client.get("/metrics").text
    assert "tara_batch_serve_requests_total" in metrics and "tara_batch_serve_query_seconds" in metrics
    spec = client.get("/openapi.json").json()
    assert {"/api/search", "/api/search/upload", "/api/videos/{video_id}", "/api/thumbnails/{video_id}",
            "/api/media/{video_id}", "/api/status"} <= set(spec["paths"])
    page = client.get("/")
    assert page.status_code == 200 and "<script src=\"/static/app.js\">" in page.text
    assert "http" not in page.text.split("<body>")[1].split("</body>")[0]  # no CDN: nothing loads from elsewhere
    assert client.get("/static/app.js").status_code == 200


def test_token_on_every_route_but_healthz(served_index, service_session, rows):
    from fastapi.testclient import TestClient

    from tara_batch.errors import ConfigError

    with pytest.raises(ConfigError, match="--token"):
        ServiceConfig(table=served_index, host="0.0.0.0")
    app = create_app(ServiceConfig(table=served_index, host="0.0.0.0", token=TOKEN), session=service_session)
    c = TestClient(app)
    vid = rows[0][S.VIDEO_ID]
    routes = [("get", "/api/status"), ("get", f"/api/videos/{vid}"), ("get", f"/api/thumbnails/{vid}"),
              ("get", f"/api/media/{vid}"), ("get", "/metrics"), ("get", "/")]
    for method, path in routes:
        assert getattr(c, method)(path).status_code == 401, path
        assert getattr(c, method)(path, headers={"Authorization": "Bearer wrong-token-xxxxxxxx"}).status_code == 401
        assert getattr(c, method)(path, params={"token": TOKEN}).status_code == 200, path
    assert c.post("/api/search", json={"mode": "text", "text": "x"}).status_code == 401
    assert c.post("/api/search", json={"mode": "text", "text": "x"},
                  headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert c.get("/healthz").status_code == 200


def test_cors_is_off_unless_configured(client, served_index, service_session):
    from fastapi.testclient import TestClient

    r = client.get("/healthz", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in r.headers
    c = TestClient(create_app(ServiceConfig(table=served_index, cors_origins=("http://ok.example",)),
                              session=service_session))
    assert c.get("/healthz", headers={"Origin": "http://ok.example"}).headers["access-control-allow-origin"] == \
        "http://ok.example"
    assert "access-control-allow-origin" not in c.get("/healthz", headers={"Origin": "http://evil.example"}).headers
