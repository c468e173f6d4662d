"""Route table: which configured route a request hits, and what it costs.

Patterns are the config's paths: literal segments, ``{name}`` for one path
segment and ``{name:path}`` for the rest of the path. Literal routes are
looked up in a dict (the common case costs one hash); patterns are tried in
configuration order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from machpay.config import FreeRouteSettings, PaidRouteSettings

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(:path)?\}")


@dataclass(frozen=True, slots=True)
class Route:
    """One configured route. ``price`` is None for a free route."""

    pattern: str
    methods: frozenset[str]
    upstream: str
    service: str = ""
    price: int | None = None
    description: str = ""
    mime_type: str = ""

    @property
    def paid(self) -> bool:
        return self.price is not None

    @property
    def route_id(self) -> bytes:
        """What a challenge is bound to (with the method): the configured pattern."""
        return self.pattern.encode("utf-8")

    def label(self, method: str) -> str:
        """``"POST /v1/items/{id}"``: how intents and metrics name the route."""
        return f"{method} {self.pattern}"


def compile_pattern(pattern: str) -> re.Pattern[str] | None:
    """A regex for a pattern with placeholders; None for a literal path."""
    if not _PLACEHOLDER.search(pattern):
        return None
    out = []
    last = 0
    for match in _PLACEHOLDER.finditer(pattern):
        out.append(re.escape(pattern[last : match.start()]))
        out.append(".+" if match.group(2) else "[^/]+")
        last = match.end()
    out.append(re.escape(pattern[last:]))
    return re.compile("".join(out))


class RouteTable:
    """Finds the route of (method, path). Unknown paths return None (answered 404)."""

    def __init__(self, routes: list[Route]) -> None:
        self._literal: dict[tuple[str, str], Route] = {}
        self._patterns: list[tuple[re.Pattern[str], Route]] = []
        self.routes = routes
        for route in routes:
            regex = compile_pattern(route.pattern)
            if regex is None:
                for method in route.methods:
                    self._literal.setdefault((method, route.pattern), route)
            else:
                self._patterns.append((regex, route))

    @classmethod
    def from_settings(
        cls, paid: list[PaidRouteSettings], free: list[FreeRouteSettings]
    ) -> RouteTable:
        routes = [
            Route(
                pattern=r.path,
                methods=frozenset(r.methods),
                upstream=r.upstream,
                service=r.service,
                price=r.price,
                description=r.description,
                mime_type=r.mime_type,
            )
            for r in paid
        ]
        routes += [
            Route(pattern=r.path, methods=frozenset(r.methods), upstream=r.upstream) for r in free
        ]
        return cls(routes)

    def match(self, method: str, path: str) -> Route | None:
        found = self._literal.get((method, path))
        if found is not None:
            return found
        for regex, route in self._patterns:
            if method in route.methods and regex.fullmatch(path):
                return route
        return None

    def allows_path(self, path: str) -> bool:
        """Whether some route has this path under another method (405 rather than 404)."""
        return any(
            route.pattern == path
            or ((regex := compile_pattern(route.pattern)) is not None and regex.fullmatch(path))
            for route in self.routes
        )
