"""Exceptions the SDK raises into agent code. All derive from :class:`MachPayError`."""

from __future__ import annotations

from typing import Any


class MachPayError(Exception):
    """Base class of every error the SDK raises on purpose."""


class PolicyViolation(MachPayError):  # noqa: N818
    """The owner's spend policy forbids signing this payment; nothing was signed.

    ``limit`` names the rule (``max_per_call``, ``max_per_vendor``, ``window``,
    ``allowed_vendors``, ``allowed_services``); ``requested`` is the amount of
    this call, ``allowed`` the configured limit and ``spent`` what was already
    spent against it (lamports; ``None`` where not meaningful).
    """

    def __init__(
        self,
        limit: str,
        message: str,
        *,
        vendor: str,
        service: str,
        requested: int,
        allowed: int | None = None,
        spent: int | None = None,
    ) -> None:
        super().__init__(f"{limit}: {message}")
        self.limit = limit
        self.vendor = vendor
        self.service = service
        self.requested = requested
        self.allowed = allowed
        self.spent = spent

    def __reduce__(self) -> tuple[object, ...]:
        state = {
            "limit": self.limit,
            "message": str(self).split(": ", 1)[-1],
            "vendor": self.vendor,
            "service": self.service,
            "requested": self.requested,
            "allowed": self.allowed,
            "spent": self.spent,
        }
        return (_rebuild_policy_violation, (state,))


def _rebuild_policy_violation(state: dict[str, Any]) -> PolicyViolation:
    limit, message = state.pop("limit"), state.pop("message")
    return PolicyViolation(limit, message, **state)


class PaymentUnsupported(MachPayError):  # noqa: N818
    """The 402 offers no payment this SDK can make (no ``machpay`` scheme entry,
    a malformed header, or a deployment other than the pinned one)."""


class PaymentRejected(MachPayError):  # noqa: N818
    """The gateway refused a signed payment; ``reason`` is its machine-readable code."""

    def __init__(self, reason: str, detail: str | None, status: int) -> None:
        super().__init__(f"payment rejected: {reason}" + (f" ({detail})" if detail else ""))
        self.reason = reason
        self.detail = detail
        self.status = status


class LedgerError(MachPayError):
    """The local allocation state cannot be used (corrupt, overflow, wrong agent)."""
