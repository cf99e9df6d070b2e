"""Conversions shared by the readers: ClickHouse values to pandas columns."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from runstream.query._deps import pandas


def utc_times(epoch_ms: Sequence[int | None]) -> Any:
    """Epoch milliseconds (None for none) as a timezone-aware UTC datetime column.

    Times are read as epoch numbers rather than datetimes so that both engines give the same
    result whatever the host's timezone (chDB may drop the zone of ``DateTime('UTC')`` columns)."""
    pd = pandas()
    return pd.to_datetime(pd.Series(epoch_ms, dtype="Int64"), unit="ms", utc=True)
