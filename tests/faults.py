"""Fault injection for tests: a loopback reverse proxy in front of the S3 server that misbehaves on purpose."""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse


class FaultProxy:
    """A loopback HTTP proxy (reverse proxy) to moto that misbehaves on purpose, a bounded number of times.

    fail_next: answer that many requests with 503 SlowDown (what S3 sends when a prefix is throttled).
    truncate_next_get: for that many GETs, send the headers and half the body, then drop the connection.
    fail_every / truncate_every: a steady fraction instead: every Nth request gets a 503, every Mth object GET is cut.
    deny: answer every request with 403 AccessDenied (credentials without permission on the bucket).
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = urlparse(upstream)
        self.fail_next = 0
        self.truncate_next_get = 0
        self.fail_every = 0
        self.truncate_every = 0
        self.deny = False
        self._count = 0
        self._gets = 0
        self.after_truncate = None  # optional callback, run after a truncated response was sent
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status sent)
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, like S3; every response carries a Content-Length

            def log_message(self, *args):  # keep test output quiet
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy._lock:
                    proxy._count += 1
                    fail = proxy.fail_next > 0 or (proxy.fail_every > 0 and proxy._count % proxy.fail_every == 0)
                    if proxy.fail_next > 0:
                        proxy.fail_next -= 1
                    object_get = not fail and self.command == "GET" and "?" not in self.path
                    if object_get:
                        proxy._gets += 1
                    truncate = object_get and (
                        proxy.truncate_next_get > 0
                        or (proxy.truncate_every > 0 and proxy._gets % proxy.truncate_every == 0)
                    )
                    if truncate and proxy.truncate_next_get > 0:
                        proxy.truncate_next_get -= 1
                if fail or proxy.deny:
                    status, code, text = (403, b"AccessDenied", b"Access Denied") if proxy.deny else \
                        (503, b"SlowDown", b"Please reduce your request rate.")
                    # Recorded before responding: the client may assert on it as soon as it has the response.
                    proxy.requests.append((self.command, self.path, status))
                    payload = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>' + code + b"</Code><Message>"
                               + text + b"</Message></Error>")
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    proxy.requests.append((self.command, self.path, resp.status))
                    self.send_response(resp.status)
                    for k, v in resp.getheaders():
                        if k.lower() not in (
                            "transfer-encoding",
                            "connection",
                            "keep-alive",
                            "content-length",
                            "date",
                            "server",
                        ):
                            self.send_header(k, v)
                    if self.command == "HEAD":
                        self.send_header("Content-Length", resp.getheader("Content-Length", "0"))
                    else:
                        self.send_header("Content-Length", str(len(data)))
                    if truncate:
                        self.send_header("Connection", "close")
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data[: len(data) // 2] if truncate else data)
                    if truncate:
                        self.wfile.flush()
                        self.close_connection = True
                        if proxy.after_truncate is not None:
                            proxy.after_truncate()
                finally:
                    conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.endpoint_url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def statuses(self) -> list[int]:
        return [s for _, _, s in self.requests]

    def count(self, status: int) -> int:
        return sum(1 for s in self.statuses() if s == status)
