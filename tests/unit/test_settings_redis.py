"""CONVEYOR_REDIS_PREFIX: every Redis key of a deployment starts with it."""

from __future__ import annotations

import pytest

from conveyor.config import load_settings
from conveyor.core.errors import ConfigError


def test_the_prefix_defaults_to_conveyor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONVEYOR_REDIS_PREFIX", raising=False)
    assert load_settings().redis_prefix == "conveyor:"


def test_the_prefix_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_REDIS_PREFIX", "staging:conveyor:")
    assert load_settings().redis_prefix == "staging:conveyor:"


@pytest.mark.parametrize("prefix", ["", "two words:", "tab\t"])
def test_an_empty_prefix_or_one_with_whitespace_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, prefix: str
) -> None:
    monkeypatch.setenv("CONVEYOR_REDIS_PREFIX", prefix)
    with pytest.raises(ConfigError, match="CONVEYOR_REDIS_PREFIX: must be non-empty"):
        load_settings()
