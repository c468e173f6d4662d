"""``requests``-style one-liners: ``machpay.sdk.pay.get(url)`` pays if asked to.

They use the default agent (the key at ``~/.config/machpay/agent.json`` or
``MACHPAY_AGENT_KEY``, unlimited policy) unless given ``agent=``. Each call
opens and closes one httpx client; keep an :meth:`Agent.client` for many calls.
"""

from __future__ import annotations

import threading
from typing import Any

import httpx

from machpay.sdk.agent import Agent

_default: Agent | None = None
_default_lock = threading.Lock()


def default_agent() -> Agent:
    """The agent behind the module-level helpers, loaded on first use."""
    global _default  # noqa: PLW0603 - one lazily loaded default, like requests' session-less API
    with _default_lock:
        if _default is None:
            _default = Agent.load()
        return _default


def request(method: str, url: str, *, agent: Agent | None = None, **kwargs: Any) -> httpx.Response:
    """Send one request, paying for a 402 with ``agent`` (or the default agent).

    Keyword arguments are httpx's (``params``, ``json``, ``content``,
    ``headers``, ``timeout``...). The response is fully read.
    """
    timeout = kwargs.pop("timeout", 30.0)
    with (agent or default_agent()).client(timeout=timeout) as client:
        return client.request(method, url, **kwargs)


def get(url: str, **kwargs: Any) -> httpx.Response:
    return request("GET", url, **kwargs)


def post(url: str, **kwargs: Any) -> httpx.Response:
    return request("POST", url, **kwargs)


def put(url: str, **kwargs: Any) -> httpx.Response:
    return request("PUT", url, **kwargs)


def delete(url: str, **kwargs: Any) -> httpx.Response:
    return request("DELETE", url, **kwargs)
