"""Times as the ClickHouse client takes them, and the partitions they fall in.

The point tables are partitioned by time (``metrics`` by month, ``hardware`` by day, as their
migrations say); ``month_span``/``day_span`` bound how many partitions a range of times covers
from its ends alone, and ``month_ids``/``day_ids`` name each time's partition as ClickHouse's
``_partition_id`` does, as whole columns (numpy), for the rare batch that needs them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

DAY_MS = 86_400_000


def at_ms(ms: int) -> datetime:
    """Epoch milliseconds as an aware UTC datetime (a ``DateTime64(3)`` value)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def month_span(lo_ms: int, hi_ms: int) -> int:
    """Calendar months (UTC) from the one holding ``lo_ms`` to the one holding ``hi_ms``, both counted."""
    lo, hi = at_ms(lo_ms), at_ms(hi_ms)
    return (hi.year - lo.year) * 12 + hi.month - lo.month + 1


def day_span(lo_ms: int, hi_ms: int) -> int:
    """Days (UTC) from the one holding ``lo_ms`` to the one holding ``hi_ms``, both counted."""
    return hi_ms // DAY_MS - lo_ms // DAY_MS + 1


def _instants(ts_ms: Sequence[int]) -> npt.NDArray[np.datetime64]:
    return np.asarray(ts_ms, dtype=np.int64).astype("datetime64[ms]")


def month_ids(ts_ms: Sequence[int]) -> npt.NDArray[np.int64]:
    """Each time's month as ``YYYYMM`` (the partition id of ``toYYYYMM(ts)``)."""
    months = _instants(ts_ms).astype("datetime64[M]").astype(np.int64)
    return (1970 + months // 12) * 100 + months % 12 + 1


def day_ids(ts_ms: Sequence[int]) -> npt.NDArray[np.int64]:
    """Each time's day as ``YYYYMMDD`` (the partition id of ``toDate(ts)``)."""
    days = _instants(ts_ms).astype("datetime64[D]")
    months = days.astype("datetime64[M]")
    day = (days - months).astype(np.int64) + 1
    month = months.astype(np.int64)
    ids: npt.NDArray[np.int64] = ((1970 + month // 12) * 100 + month % 12 + 1) * 100 + day
    return ids
