"""The dashboard's HTTP server on its own (no broker): the page, the JSON with its headers, and a loopback
server refusing requests for another host name (DNS rebinding)."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator

import pytest

from publisher.dashboard.server import DashboardServer


@pytest.fixture
def server() -> Iterator[DashboardServer]:
    running = DashboardServer(("127.0.0.1", 0), lambda: {"devices": 3})
    thread = threading.Thread(target=running.serve_forever, daemon=True)
    thread.start()
    yield running
    running.shutdown()
    running.server_close()


def _get(server: DashboardServer, path: str, host: str | None = None) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    connection.putrequest("GET", path, skip_host=host is not None)
    if host is not None:
        connection.putheader("Host", host)
    connection.endheaders()
    return connection.getresponse()


def test_the_page_and_the_json_are_served_with_a_policy(server: DashboardServer) -> None:
    page = _get(server, "/")
    assert page.status == 200 and b'<script src="/dashboard.js"' in page.read()
    answer = _get(server, "/api/fleet")
    assert answer.status == 200 and json.loads(answer.read()) == {"devices": 3}
    assert answer.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert answer.headers["X-Content-Type-Options"] == "nosniff" and answer.headers["Cache-Control"] == "no-store"
    assert _get(server, "/nothing").status == 404


def test_a_request_for_another_host_name_is_refused(server: DashboardServer) -> None:
    port = server.server_address[1]
    assert _get(server, "/api/fleet", host=f"localhost:{port}").status == 200
    refused = _get(server, "/api/fleet", host=f"attacker.example:{port}")
    assert refused.status == 403 and b"devices" not in refused.read()
