"""The rules in force: each team's newest valid rule set, read from the compacted rules topic.

``RulesFeed`` is a thread with a plain kafka-python consumer (no group: every worker reads the whole
topic, from its start) that hands each record to the ``RuleBook``. A record that does not validate
is logged and refused, and the team keeps the rules it had; an older version than the one in force
is ignored. A record without a value (a tombstone) removes the team's rules.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

from runstream_core import alert_rules as ar
from runstream_core import kafka
from runstream_core.log import get_logger
from runstream_core.settings import KafkaSettings

log = get_logger("runstream.alerts")


class RuleBook:
    """Each team's rule set in force; read from any thread."""

    def __init__(self, sets: Mapping[str, ar.RuleSet] | None = None) -> None:
        self._sets: dict[str, ar.RuleSet] = dict(sets or {})
        self._lock = threading.Lock()
        self.refused = 0

    def current(self) -> Mapping[str, ar.RuleSet]:
        """The rules in force now, by team (a snapshot: later changes do not show through)."""
        return self._sets

    def offer(self, key: bytes | None, value: bytes | None) -> bool:
        """Take one record of the rules topic; returns whether the rules in force changed."""
        team = (key or b"").decode("utf-8", "replace")
        if value is None:
            with self._lock:
                if team not in self._sets:
                    return False
                self._sets = {t: s for t, s in self._sets.items() if t != team}
            log.info("alert rules removed", team=team)
            return True
        try:
            ruleset = ar.decode(value, f"alert rules of {team!r}")
            if ruleset.team != team:
                raise ar.RulesError(f"alert rules of {team!r}: the record's key names another team than its rules")
        except ar.RulesError as exc:
            self.refused += 1
            log.error("alert rules refused; the team's previous rules stay in force", team=team, error=str(exc)[:1000])
            return False
        with self._lock:
            held = self._sets.get(team)
            if held is not None and held.version >= ruleset.version:
                return False
            self._sets = {**self._sets, team: ruleset}  # swapped whole: readers keep a consistent snapshot
        log.info("alert rules in force", team=team, version=ruleset.version, rules=len(ruleset.rules))
        return True


class RulesFeed:
    """Reads the rules topic into a ``RuleBook`` on a daemon thread until ``stop``."""

    def __init__(self, settings: KafkaSettings, topic: str, book: RuleBook, poll_s: float = 0.5) -> None:
        self._settings = settings
        self._topic = topic
        self.book = book
        self._poll_ms = int(poll_s * 1000)
        self._stop = threading.Event()
        self.caught_up = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alert-rules", daemon=True)

    def start(self) -> RulesFeed:
        self._thread.start()
        return self

    def wait_caught_up(self, timeout_s: float) -> bool:
        """Whether the topic was read to its end within ``timeout_s``."""
        return self.caught_up.wait(timeout_s)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            try:
                self._consume()
                return
            except Exception as exc:
                log.error("alert rules topic unreadable; retrying", error=repr(exc)[:300], retry_in_s=delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)

    def _consume(self) -> None:
        from kafka import TopicPartition

        consumer = kafka.consumer(self._settings, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest")
        try:
            partitions: set[int] | None = None
            deadline = time.monotonic() + 30
            while not partitions and not self._stop.is_set():
                partitions = consumer.partitions_for_topic(self._topic)
                if not partitions:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"topic {self._topic} does not exist")
                    self._stop.wait(0.5)
            if self._stop.is_set() or not partitions:
                return
            assigned = [TopicPartition(self._topic, p) for p in sorted(partitions)]
            consumer.assign(assigned)
            consumer.seek_to_beginning(*assigned)
            ends = consumer.end_offsets(assigned)
            while not self._stop.is_set():
                for records in consumer.poll(timeout_ms=self._poll_ms).values():
                    for record in records:
                        self.book.offer(record.key, record.value)
                if not self.caught_up.is_set() and all(consumer.position(tp) >= ends[tp] for tp in assigned):
                    self.caught_up.set()
        finally:
            consumer.close()
