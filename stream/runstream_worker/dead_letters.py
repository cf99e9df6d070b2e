"""What goes on the dead-letter topic for a rejected record, a pure step: ``letter``.

A dead letter is the record as it came (key and value) with headers that say why and whence:
``reason``, ``source_topic``, ``source_partition``, ``source_offset``. A record near Kafka's size
limit plus those headers would be over it, and the producer would refuse the whole send: the value
is then cut to fit (its head is kept), the reason says so, and ``original_size`` gives the size of
the value as it came.
"""

from __future__ import annotations

from dataclasses import dataclass

from runstream_worker.decode import Rejected

MAX_REASON_BYTES = 4096

RECORD_OVERHEAD = 512
"""Bytes counted for a record's own framing and its batch's header, over what the producer
itself estimates (about 80)."""


@dataclass(frozen=True)
class Letter:
    """One dead letter as it is sent."""

    key: bytes | None
    value: bytes
    headers: dict[str, bytes]

    def size(self) -> int:
        """An upper bound of its size on the wire, framing included."""
        headers = sum(len(name) + len(value) + 10 for name, value in self.headers.items())
        return RECORD_OVERHEAD + len(self.key or b"") + len(self.value) + headers


class LetterTooLargeError(Exception):
    """Raised by a sender when Kafka refuses a letter for its size; the runner cuts it further."""


def letter(rejected: Rejected, max_bytes: int) -> Letter:
    """The dead letter for ``rejected``, no larger than ``max_bytes`` (cut if it would be)."""
    src = rejected.record
    value = src.value or b""
    headers = {
        "reason": rejected.reason.encode()[:MAX_REASON_BYTES],
        "source_topic": src.topic.encode(),
        "source_partition": str(src.partition).encode(),
        "source_offset": str(src.offset).encode(),
    }
    whole = Letter(src.key, value, headers)
    if whole.size() <= max_bytes:
        return whole
    note = f" (dead letter cut to its first {{kept}} of {len(value)} bytes to fit Kafka's limit)"
    reason = rejected.reason.encode()[: MAX_REASON_BYTES - len(note) - 20]
    headers = {**headers, "reason": reason, "original_size": str(len(value)).encode()}
    key = src.key[:MAX_REASON_BYTES] if src.key else src.key  # a key is a run id; a huge one is cut too
    room = max_bytes - Letter(key, b"", headers).size() - len(note) - 20
    kept = max(0, min(len(value), room))
    headers["reason"] = reason + note.format(kept=kept).encode()
    return Letter(key, value[:kept], headers)
