"""The API the demo's vendors sell: a few JSON routes behind each gateway.

Deliberately small and deterministic, so the report can check that every
paid call was really served by the upstream (it counts what it answered).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class VendorApi:
    """ASGI app answering /v1/<service>?q=... with a small JSON result."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.served: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path: str = scope["path"]
        query = scope.get("query_string", b"").decode()
        self.served[path] += 1
        digest = hashlib.sha256(f"{self.name}|{path}|{query}".encode() + body).hexdigest()
        payload = orjson.dumps(
            {"vendor": self.name, "path": path, "query": query, "result": digest[:16]}
        )
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": payload})
