"""The dashboard's HTTP server: the page (three static files) and ``/api/fleet``, the view as JSON.

The standard library's ThreadingHTTPServer, on purpose: the server answers a few operators' browsers with
one static page and one small JSON document per refresh, which needs no framework, and it adds nothing to
install on the publisher's machine. It only reads: there is no form, no write and no cookie. Every answer
carries a Content-Security-Policy that allows the page's own script and nothing inline, and the page puts
device-reported text into the document as text, never as markup. Bound to a loopback address it answers
only requests for a loopback host name, so a web page elsewhere cannot read the fleet through DNS
rebinding.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources

_STATIC = {"/": ("index.html", "text/html; charset=utf-8"),
           "/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
           "/dashboard.css": ("dashboard.css", "text/css; charset=utf-8")}
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


class DashboardServer(ThreadingHTTPServer):
    """Serves the page and ``view()`` as JSON on ``address`` (port 0: a free one; see ``url``)."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], view: Callable[[], dict]) -> None:
        self.view = view
        self.files = {path: (resources.files(__package__).joinpath("static", name).read_bytes(), kind)
                      for path, (name, kind) in _STATIC.items()}
        super().__init__(address, _Handler)
        port = self.server_address[1]
        #: Host headers answered (None: any, for a dashboard bound beyond loopback, behind a proxy).
        self.hosts = {f"{name}:{port}" for name in ("127.0.0.1", "localhost", "[::1]")} \
            if address[0] in _LOOPBACK else None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"


class _Handler(BaseHTTPRequestHandler):
    server: DashboardServer
    server_version = "rankcast-dashboard"

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        path = self.path.split("?", 1)[0]
        if self.server.hosts is not None and self.headers.get("Host") not in self.server.hosts:
            self._send(HTTPStatus.FORBIDDEN, b"this dashboard answers requests for 127.0.0.1 or localhost only\n",
                       "text/plain")
        elif path == "/api/fleet":
            self._send(HTTPStatus.OK, json.dumps(self.server.view()).encode(), "application/json")
        elif path in self.server.files:
            self._send(HTTPStatus.OK, *self.server.files[path])
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found: the dashboard serves / and /api/fleet\n", "text/plain")

    def _send(self, status: HTTPStatus, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for name, value in _HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's signature
        """Quiet: a page that refreshes every few seconds would fill the terminal."""
