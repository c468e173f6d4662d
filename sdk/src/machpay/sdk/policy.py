"""The spend policy an agent's owner sets, and how a payment is checked against it.

Static rules (allowed vendors and services, the per-call cap) need nothing but
the offer. Budget rules (per-vendor total, rolling window) need what was
already spent; :class:`~machpay.sdk.ledger.AgentLedger` checks them inside the
same transaction that allocates the payment, so two threads or processes
sharing a key cannot together overshoot a budget.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from machpay.sdk.errors import PolicyViolation


@dataclass(frozen=True, slots=True)
class SpendPolicy:
    """Limits in lamports (the asset's base units). ``None`` means no limit.

    - ``max_per_call``: the price of one call;
    - ``max_per_vendor``: everything ever authorised to one vendor;
      ``vendor_limits`` overrides it for named vendors;
    - ``window_limit`` per ``window_seconds``: everything authorised to all
      vendors in the rolling window ending now;
    - ``allowed_vendors`` / ``allowed_services``: when set, anything else is refused;
    - ``max_timeout_seconds``: the longest validity an intent may carry
      (the gateway's ``maxTimeoutSeconds`` is used when shorter).
    """

    max_per_call: int | None = None
    max_per_vendor: int | None = None
    vendor_limits: Mapping[str, int] = field(default_factory=dict)
    window_limit: int | None = None
    window_seconds: float = 3600.0
    allowed_vendors: AbstractSet[str] | None = None
    allowed_services: AbstractSet[str] | None = None
    max_timeout_seconds: int = 60

    def __post_init__(self) -> None:
        for name in ("max_per_call", "max_per_vendor", "window_limit"):
            value = getattr(self, name)
            if value is not None and (type(value) is not int or value < 0):
                raise ValueError(f"{name} must be a non-negative integer or None, got {value!r}")
        for vendor, limit in self.vendor_limits.items():
            if type(limit) is not int or limit < 0:
                raise ValueError(f"vendor_limits[{vendor!r}] must be a non-negative integer")
        if self.window_seconds <= 0:
            raise ValueError("window_seconds must be positive")
        if self.max_timeout_seconds < 1:
            raise ValueError("max_timeout_seconds must be at least 1")
        for name in ("allowed_vendors", "allowed_services"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, frozenset):
                object.__setattr__(self, name, frozenset(_strings(name, value)))

    def narrowed(
        self,
        *,
        max_per_call: int | None = None,
        vendors: AbstractSet[str] | None = None,
        services: AbstractSet[str] | None = None,
    ) -> SpendPolicy:
        """This policy with tighter limits; never looser than it already is."""
        policy = self
        if max_per_call is not None:
            current = policy.max_per_call
            cap = max_per_call if current is None else min(current, max_per_call)
            policy = replace(policy, max_per_call=cap)
        if vendors is not None:
            allowed = policy.allowed_vendors
            narrowed = frozenset(vendors) if allowed is None else frozenset(vendors) & allowed
            policy = replace(policy, allowed_vendors=narrowed)
        if services is not None:
            allowed = policy.allowed_services
            narrowed = frozenset(services) if allowed is None else frozenset(services) & allowed
            policy = replace(policy, allowed_services=narrowed)
        return policy

    @property
    def needs_budget(self) -> bool:
        """True when checking needs what was already spent."""
        return (
            self.max_per_vendor is not None
            or bool(self.vendor_limits)
            or self.window_limit is not None
        )

    def vendor_limit(self, vendor: str) -> int | None:
        return self.vendor_limits.get(vendor, self.max_per_vendor)

    def check_offer(self, *, vendor: str, service: str, amount: int) -> None:
        """The rules that need no history; raises :class:`PolicyViolation`."""
        if self.allowed_vendors is not None and vendor not in self.allowed_vendors:
            raise PolicyViolation(
                "allowed_vendors",
                f"vendor {vendor} is not in the allowed vendors",
                vendor=vendor,
                service=service,
                requested=amount,
            )
        if self.allowed_services is not None and service not in self.allowed_services:
            raise PolicyViolation(
                "allowed_services",
                f"service {service!r} is not in the allowed services",
                vendor=vendor,
                service=service,
                requested=amount,
            )
        if self.max_per_call is not None and amount > self.max_per_call:
            raise PolicyViolation(
                "max_per_call",
                f"price {amount} exceeds the per-call limit {self.max_per_call}",
                vendor=vendor,
                service=service,
                requested=amount,
                allowed=self.max_per_call,
            )

    def check_budget(
        self,
        *,
        vendor: str,
        service: str,
        amount: int,
        spent_with_vendor: int,
        spent_in_window: int,
    ) -> None:
        """The rules that need history: what was spent with this vendor and in the window."""
        limit = self.vendor_limit(vendor)
        if limit is not None and spent_with_vendor + amount > limit:
            raise PolicyViolation(
                "max_per_vendor",
                f"{spent_with_vendor} already spent with vendor {vendor}; "
                f"{amount} more exceeds its limit {limit}",
                vendor=vendor,
                service=service,
                requested=amount,
                allowed=limit,
                spent=spent_with_vendor,
            )
        if self.window_limit is not None and spent_in_window + amount > self.window_limit:
            raise PolicyViolation(
                "window",
                f"{spent_in_window} already spent in the last {self.window_seconds:g} s; "
                f"{amount} more exceeds the window limit {self.window_limit}",
                vendor=vendor,
                service=service,
                requested=amount,
                allowed=self.window_limit,
                spent=spent_in_window,
            )


def _strings(name: str, values: Iterable[object]) -> Iterable[str]:
    if isinstance(values, str):
        raise ValueError(f"{name} must be a collection of strings, not one string")
    for value in values:
        if not isinstance(value, str):
            raise ValueError(f"{name} must contain strings, got {value!r}")
        yield value


def policy_from_mapping(data: Mapping[str, Any], where: str = "policy") -> SpendPolicy:
    """A policy from plain data (a TOML table, JSON): the field names of :class:`SpendPolicy`.

    Unknown keys are refused (a typo must not silently lift a limit);
    ``ValueError`` names the key and ``where``.
    """
    known = {f.name for f in fields(SpendPolicy)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{where}: unknown policy key(s) {unknown}; known: {sorted(known)}")
    values: dict[str, Any] = dict(data)
    for name in ("allowed_vendors", "allowed_services"):
        if values.get(name) is not None:
            values[name] = frozenset(_strings(f"{where}.{name}", values[name]))
    if "vendor_limits" in values and not isinstance(values["vendor_limits"], Mapping):
        raise ValueError(f"{where}.vendor_limits: expected a table of vendor = lamports")
    try:
        return SpendPolicy(**values)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {exc}") from None


def load_policy(path: str | os.PathLike[str]) -> SpendPolicy:
    """Read a policy from a TOML file: keys at the top level or in a ``[policy]`` table::

    max_per_call = 5000
    window_limit = 200000
    window_seconds = 3600
    allowed_services = ["search", "weather"]
    [vendor_limits]
    "<vendor address>" = 1000000
    """
    where = Path(path)
    try:
        data = tomllib.loads(where.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{where}: cannot read policy: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{where}: not valid TOML: {exc}") from exc
    table = data.get("policy", data)
    if not isinstance(table, Mapping):
        raise ValueError(f"{where}: [policy] must be a table")
    return policy_from_mapping(table, str(where))


UNLIMITED = SpendPolicy()
"""No limits beyond the 60-second intent validity. Explicit, so it reads as a choice."""
