"""Serve: the query service over an index, its web page, and the same app on Ray Serve.

May import every layer below it (`search/`, `index/`, `io/`, `video/`, `models/`, `config`); nothing imports it but
the CLI. The service is a thin layer over `search.session.SearchSession`.

    app.py       the FastAPI app: JSON API, thumbnails, media with Range, status, health, metrics, the page
    media.py     thumbnails (PyAV, disk cache with a size bound), local files, S3 presigned URLs
    ray_app.py   Ray Serve: FastAPI ingress + query-embedder replicas (num_cpus / num_gpus, autoscaling)
    static/      index.html, app.js, style.css: plain, no build step, no CDN
"""
