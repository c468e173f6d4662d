"""Fixtures for the SDK tests: a stand-in x402 server on 127.0.0.1 and an agent."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from machpay.protocol import Keypair
from machpay.sdk import Agent, SpendPolicy
from machpay.sdk.testing import PaidRoute, PaywalledApp

DOMAIN = bytes.fromhex("6c6f63616c6e6574")
PROGRAM_ID = Keypair.from_seed(b"p" * 32).public
VENDOR = Keypair.from_seed(b"v" * 32)


@dataclass
class Served:
    app: PaywalledApp
    url: str


class ServerThread:
    """uvicorn serving an ASGI app on a free 127.0.0.1 port, in a thread."""

    def __init__(self, app: Callable[..., Any]) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def make_app() -> PaywalledApp:
    return PaywalledApp(
        vendor=VENDOR.public,
        program_id=PROGRAM_ID,
        domain=DOMAIN,
        routes={
            "/v1/forecast": PaidRoute("weather", 1_000, "forecast"),
            "/v1/translate": PaidRoute("translate", 2_500, "translation"),
        },
    )


@pytest.fixture
def served() -> Iterator[Served]:
    app = make_app()
    with ServerThread(app) as url:
        yield Served(app, url)


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    with Agent(
        Keypair.generate(), policy=SpendPolicy(max_per_call=10_000), state_dir=tmp_path / "state"
    ) as value:
        yield value


@pytest.fixture(autouse=True)
def _isolated_agent_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads or writes the developer's real ~/.config/machpay."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    for name in ("MACHPAY_AGENT_KEY", "MACHPAY_AGENT_POLICY", "MACHPAY_AGENT_STATE"):
        monkeypatch.delenv(name, raising=False)
