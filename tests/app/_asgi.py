"""A minimal in-process HTTP client for the workstation's Starlette routes (no network, no httpx)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def request(app, method: str, url: str, *, headers: dict[str, str] | None = None, cookies: dict[str, str] | None = None, body: bytes = b"") -> Reply:  # noqa: ANN001
    """Send one request to an ASGI ``app`` and return its reply. ``url`` is a path with an optional query."""
    parts = urlsplit(url)
    raw_path = parts.path.encode("latin-1")
    from urllib.parse import unquote

    hdrs = {"host": "127.0.0.1:8501", **{k.lower(): v for k, v in (headers or {}).items()}}
    if cookies:
        hdrs["cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": unquote(parts.path),
        "raw_path": raw_path,
        "query_string": parts.query.encode("latin-1"),
        "root_path": "",
        "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in hdrs.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8501),
    }
    sent = {"status": 0, "headers": {}, "body": b""}
    delivered = False

    async def receive():  # noqa: ANN202
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message):  # noqa: ANN001, ANN202
        if message["type"] == "http.response.start":
            sent["status"] = message["status"]
            sent["headers"] = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in message.get("headers", [])}
        elif message["type"] == "http.response.body":
            sent["body"] += message.get("body", b"")

    asyncio.run(app(scope, receive, send))
    return Reply(sent["status"], sent["headers"], sent["body"])
