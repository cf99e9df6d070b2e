"""A ClickHouse DSN parsed once: the embedded engine's database directory, or a server's URL.

The URI scheme picks the store, as MLflow picks a store by its tracking URI: ``chdb:///abs/path``
is the embedded engine (chDB, the real ClickHouse engine in this process), ``http://`` or
``https://`` a server. Everything else receives the parsed target, never the string.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from urllib.parse import urlsplit

EMBEDDED_SCHEME = "chdb"


@dataclass(frozen=True)
class ClickHouseTarget:
    url: str
    path: str | None = None
    """The database directory of an embedded store; None for a server."""

    @property
    def embedded(self) -> bool:
        return self.path is not None

    @classmethod
    @functools.lru_cache(maxsize=64)
    def parse(cls, url: str) -> ClickHouseTarget:
        """The target of ``url``; ``ValueError`` saying what to write instead for anything else."""
        if url.startswith(f"{EMBEDDED_SCHEME}:"):
            path = url.removeprefix(f"{EMBEDDED_SCHEME}://")
            if not path.startswith("/"):
                raise ValueError(f"{url!r}: give the embedded store an absolute path, chdb:///abs/path")
            return cls(url, path)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r}: expected chdb:///abs/path (embedded) or http(s)://host:port (a server)")
        return cls(url)
