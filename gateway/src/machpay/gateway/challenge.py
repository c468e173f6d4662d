"""Stateless challenges: any replica holding the vendor's secret can check them.

    challenge = bucket(u32 big-endian)
             || HMAC-SHA256(secret, b"machpay:challenge:v1" || bucket
                                     || u16be(len(route id)) || route id || method)[:16]

``bucket`` is ``unix time // bucket_seconds``. A challenge is fresh while
``now - bucket * bucket_seconds <= max_age`` (and its bucket is not in the
future). The route id is length-prefixed so that route and method can never
be re-split. 20 bytes in all; opaque to the agent, which only hashes it into
the intent context.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

TAG = b"machpay:challenge:v1"
MAC_LEN = 16
CHALLENGE_LEN = 4 + MAC_LEN
#: (bucket, route, method) MACs kept; a gateway has few routes and ~2 live buckets.
MAC_CACHE_SIZE = 4096


class ChallengeIssuer:
    def __init__(self, secret: bytes, *, bucket_seconds: int, max_age_seconds: int) -> None:
        if len(secret) < 16:
            raise ValueError("the challenge secret must be at least 16 bytes")
        self._key = hmac.new(secret, TAG, hashlib.sha256)  # copied per use: key schedule once
        self.bucket_seconds = bucket_seconds
        self.max_age_seconds = max_age_seconds
        self._macs: dict[tuple[bytes, bytes, str], bytes] = {}

    def _mac(self, bucket: bytes, route_id: bytes, method: str) -> bytes:
        # A pure function of (bucket, route, method) under one secret: cached, as every
        # paid call of a route within one bucket checks the same MAC.
        key = (bucket, route_id, method)
        mac = self._macs.get(key)
        if mac is None:
            if len(self._macs) >= MAC_CACHE_SIZE:
                self._macs.clear()
            h = self._key.copy()
            h.update(bucket)
            h.update(struct.pack(">H", len(route_id)))
            h.update(route_id)
            h.update(method.encode("ascii"))
            mac = self._macs[key] = h.digest()[:MAC_LEN]
        return mac

    def issue(self, route_id: bytes, method: str, now: float) -> bytes:
        bucket = struct.pack(">I", int(now) // self.bucket_seconds)
        return bucket + self._mac(bucket, route_id, method)

    def check(self, challenge: bytes, route_id: bytes, method: str, now: float) -> str | None:
        """None when the challenge is ours, for this route and method, and fresh;
        else why not, in words."""
        if len(challenge) != CHALLENGE_LEN:
            return f"challenge is {len(challenge)} bytes, this gateway issues {CHALLENGE_LEN}"
        bucket = challenge[:4]
        if not hmac.compare_digest(challenge[4:], self._mac(bucket, route_id, method)):
            return "challenge was not issued by this vendor for this route and method"
        started = struct.unpack(">I", bucket)[0] * self.bucket_seconds
        if started > now:
            return "challenge is from the future"
        if now - started > self.max_age_seconds:
            return f"challenge is {int(now - started)}s old (max {self.max_age_seconds}s)"
        return None
