"""The same app on Ray Serve, on the test Ray session: FastAPI ingress + a query-embedder deployment answer a query
with the same ranking the in-process service gives."""

from __future__ import annotations

import json
import socket
import urllib.request

import pytest

pytestmark = pytest.mark.integration


def test_serve_app_answers_a_query_like_the_local_service(ray_session, served_index, service_session):
    from ray import serve

    from tara_batch.search.session import Query
    from tara_batch.serve.app import wait_ready
    from tara_batch.serve.ray_app import build_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(build_app({"table": served_index, "host": "127.0.0.1", "embedder_num_cpus": 0.5,
                             "ingress_num_cpus": 0.25, "embedder_max_replicas": 1, "ingress_max_replicas": 1}),
                  name="search", route_prefix="/", blocking=False)
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, timeout_s=120)
        body = json.dumps({"mode": "text", "text": "a red circle moves from left to right", "k": 5}).encode()
        req = urllib.request.Request(url + "/api/search", data=body, headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as r:
            got = json.loads(r.read())
        local = service_session.run(Query(kind="text", text="a red circle moves from left to right", k=5))
        assert [x["video_id"] for x in got["results"]] == [x["video_id"] for x in local.rows]
        with urllib.request.urlopen(url + "/api/status", timeout=30) as r:
            assert json.loads(r.read())["serving"] == service_session.version
    finally:
        serve.shutdown()


def test_serve_config_mistakes_name_the_field():
    from tara_batch.errors import ConfigError
    from tara_batch.serve.ray_app import app_config

    with pytest.raises(ConfigError, match="table"):
        app_config({})
    with pytest.raises(ConfigError, match="embedder_min_replicas"):
        app_config({"table": "x/y", "embedder_min_replicas": 3, "embedder_max_replicas": 2})
    with pytest.raises(ConfigError, match="unknown field"):
        app_config({"table": "x/y", "replicas": 3})
