"""Times as the ClickHouse client takes them."""

from __future__ import annotations

from datetime import UTC, datetime


def at_ms(ms: int) -> datetime:
    """Epoch milliseconds as an aware UTC datetime (a ``DateTime64(3)`` value)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
