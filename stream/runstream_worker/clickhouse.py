"""ClickHouse clients for the worker. The connect logic lives in the SDK (``runstream._clickhouse``)
so that notebooks share it without importing the worker's dependencies."""

from __future__ import annotations

from runstream._clickhouse import connect, embedded_path, is_embedded

__all__ = ["connect", "embedded_path", "is_embedded"]
