"""Each component installs only what it needs.

An agent must never download a stream processor to pay for an API call, and a
vendor's gateway must not pull Faust or ClickHouse. These tests walk the
*declared* dependency closure of each installed distribution (markers and
extras evaluated), and import the light components in a fresh interpreter
where the heavy modules are made unimportable.
"""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

HEAVY_FOR_SDK = {"aiokafka", "faust-streaming", "chdb", "clickhouse-connect", "solana", "fastapi"}
HEAVY_FOR_GATEWAY = {"faust-streaming", "chdb", "clickhouse-connect", "solana"}


def closure(name: str, extras: frozenset[str] = frozenset()) -> set[str]:
    """Canonical names of every distribution `name[extras]` pulls in."""
    seen: set[tuple[str, frozenset[str]]] = set()
    out: set[str] = set()
    stack = [(canonicalize_name(name), extras)]
    while stack:
        dist_name, dist_extras = stack.pop()
        if (dist_name, dist_extras) in seen:
            continue
        seen.add((dist_name, dist_extras))
        out.add(dist_name)
        try:
            requires = distribution(dist_name).requires or []
        except PackageNotFoundError:
            continue
        for line in requires:
            req = Requirement(line)
            envs = [{"extra": e} for e in dist_extras] or [{"extra": ""}]
            if req.marker is not None and not any(req.marker.evaluate(env) for env in envs):
                continue
            stack.append((canonicalize_name(req.name), frozenset(req.extras)))
    return out


def test_sdk_closure_has_no_kafka_faust_clickhouse_or_rpc() -> None:
    pulled = closure("machpay-sdk")
    assert "machpay-core" in pulled, "the SDK must use the one protocol core"
    assert not pulled & HEAVY_FOR_SDK, f"machpay-sdk pulls in {sorted(pulled & HEAVY_FOR_SDK)}"


def test_gateway_closure_has_no_faust_or_clickhouse() -> None:
    pulled = closure("machpay-gateway")
    assert "aiokafka" in pulled, "the gateway produces to Kafka itself"
    assert not pulled & HEAVY_FOR_GATEWAY, (
        f"machpay-gateway pulls in {sorted(pulled & HEAVY_FOR_GATEWAY)}"
    )


def test_core_kafka_client_is_an_extra() -> None:
    assert "aiokafka" not in closure("machpay-core")
    assert "aiokafka" in closure("machpay-core", frozenset({"kafka"}))


BLOCKER = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {blocked!r}:
            raise ImportError(f'{{name}} must not be imported here')
        return None
sys.meta_path.insert(0, Block())
import {module}
import machpay.protocol, machpay.config, machpay.topics
print('imported')
"""


@pytest.mark.parametrize(
    ("module", "blocked"),
    [
        ("machpay.sdk", {"aiokafka", "faust", "mode", "chdb", "clickhouse_connect", "solana"}),
        ("machpay.gateway", {"faust", "mode", "chdb", "clickhouse_connect"}),
    ],
)
def test_light_components_import_without_heavy_modules(module: str, blocked: set[str]) -> None:
    code = BLOCKER.format(blocked=sorted(blocked), module=module)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, (
        f"importing {module} touched a forbidden module:\n{result.stderr}"
    )
    assert result.stdout.strip() == "imported"
