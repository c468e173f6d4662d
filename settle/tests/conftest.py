"""The local Solana runtime for the settler's integration tests.

``localnet_url`` starts one ``machpay-localnet`` node (LiteSVM running the
three programs natively, programs/localnet) per session on a free port,
building it with cargo when needed, and stops it at the end. Set
``MACHPAY_TEST_RPC_URL`` to use a running endpoint instead (it must run the
MachPay programs at their ids and give airdrops), and
``MACHPAY_TEST_CARGO_TARGET`` to build into another cargo target directory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

RPC_ENV = "MACHPAY_TEST_RPC_URL"
TARGET_ENV = "MACHPAY_TEST_CARGO_TARGET"


@pytest.fixture(scope="session")
def localnet_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get(RPC_ENV)
    if external:
        yield external
        return
    from machpay.localnet.node import LocalnetError, LocalnetNode
    from machpay.testing import free_port

    target = os.environ.get(TARGET_ENV)
    node = LocalnetNode(
        port=free_port(),
        home=tmp_path_factory.mktemp("localnet"),
        target_dir=Path(target) if target else None,
    )
    try:
        node.start(die_with_parent=True, timeout=60)
    except LocalnetError as exc:
        pytest.fail(f"no local Solana runtime: {exc}", pytrace=False)
    try:
        yield node.url
    finally:
        node.stop()
