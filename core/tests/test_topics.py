"""The topic declarations are the single source of names and broker configs."""

from __future__ import annotations

import pytest

from machpay import topics


def test_names_are_unique_and_lookups_round_trip() -> None:
    names = [t.name for t in topics.ALL_TOPICS]
    assert len(names) == len(set(names))
    for topic in topics.ALL_TOPICS:
        assert topics.by_name(topic.qualified("dev."), "dev.") is topic


def test_status_topic_is_compacted_and_kept() -> None:
    cfg = topics.AGENTS_STATUS.config()
    assert cfg["cleanup.policy"] == "compact"
    assert cfg["retention.ms"] == "-1"
    assert "cleanup.policy" not in topics.INTENTS_ACCEPTED.config()


def test_unknown_topic_lists_known_ones() -> None:
    with pytest.raises(KeyError, match=r"intents\.accepted"):
        topics.by_name("nope")
