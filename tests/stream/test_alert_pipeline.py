"""The alert pipeline on the real embedded ClickHouse: a take's runs are evaluated even when the
timer or an assignment forgets runs while the take's reads are in flight."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from runstream_core import alert_rules as ar
from runstream_core.events import MetricBatch
from runstream_worker.alerts.pipeline import INFO_RETRY_MS, AlertPipeline
from runstream_worker.alerts.rulebook import RuleBook
from runstream_worker.migrate import migrate
from runstream_worker.rows import RowBatch
from runstream_worker.sink import ClickHouseSink
from tests.fixtures.settings import StackSettings as Settings

NOW_MS = 1_800_000_000_000
NAN = float("nan")


def nlp_rules() -> RuleBook:
    """A NaN rule for every run of the team: no scope, so it needs neither group nor tags."""
    rules = [{"name": "nan", "kind": "nan", "metric": "acc", "notify": ["mine"]}]
    return RuleBook(
        {"nlp": ar.validate({"team": "nlp", "webhooks": [{"name": "mine", "url_secret": "U"}], "rules": rules})}
    )


def points(run_id: str, values: list[float], seq: int = 2, first_step: int = 0) -> MetricBatch:
    """A run's points, read before its start (which travels on another topic)."""
    n = len(values)
    return MetricBatch(
        producer_id="job", seq=seq, run_id=run_id, team="nlp", project="p", keys=["acc"] * n,
        steps=list(range(first_step, first_step + n)), ts_ms=[NOW_MS] * n, values=values,
    )  # fmt: skip


class Interleaved:
    """A pipeline on the real store whose next ClickHouse read named ``during`` lets ``meanwhile``
    run first (as the timer or an assignment does while a read waits on the ClickHouse thread)."""

    def __init__(self, sink: ClickHouseSink, meanwhile: Callable[[AlertPipeline], Any], during: str | None) -> None:
        self.sink = sink
        self.meanwhile = meanwhile
        self.during = during
        self.now_ms = NOW_MS
        self.pipeline = AlertPipeline(
            nlp_rules(), sink, self._on_clickhouse, self._write_own, lambda: self.now_ms, resend_ms=0
        )

    async def _on_clickhouse(self, call: Callable[..., Any], *args: Any) -> Any:
        if call.__name__ == self.during:
            self.during = None
            done = self.meanwhile(self.pipeline)
            if asyncio.iscoroutine(done):
                await done
        return call(*args)

    async def _write_own(self, rows: RowBatch, what: str) -> None:
        self.sink.write(rows, None)


@pytest.fixture
def sink(chdb_settings: Settings) -> Iterator[ClickHouseSink]:
    migrate(chdb_settings)
    opened = ClickHouseSink(chdb_settings)
    yield opened
    opened.close()


def stored(sink: ClickHouseSink) -> list[tuple[str, str, str]]:
    return sorted((m.run_id, m.alert_id, m.delivery) for m in sink.pending_alerts(0))


def tick(pipeline: AlertPipeline) -> Any:
    return pipeline.tick()


def assign(pipeline: AlertPipeline) -> None:
    pipeline.assigned([0], 1)


@pytest.mark.parametrize("during", ["run_infos", "alert_states"])
@pytest.mark.parametrize("meanwhile", [tick, assign])  # the tick forgets the runs just met, the assignment all
def test_a_take_is_evaluated_whatever_is_forgotten_during_its_reads(
    sink: ClickHouseSink, meanwhile: Callable[[AlertPipeline], Any], during: str
) -> None:
    interleaved = Interleaved(sink, meanwhile, during)
    asyncio.run(interleaved.pipeline.evaluate([points("nlp-a", [NAN, 1.0]), points("nlp-b", [NAN, 1.0])]))
    assert interleaved.during is None  # it did run during the read
    assert stored(sink) == [
        ("nlp-a", "nan/acc/1/fired", "pending"),
        ("nlp-a", "nan/acc/1/resolved", "pending"),
        ("nlp-b", "nan/acc/1/fired", "pending"),
        ("nlp-b", "nan/acc/1/resolved", "pending"),
    ]


def test_a_run_forgotten_during_a_read_is_read_again_from_its_state(sink: ClickHouseSink) -> None:
    """A run held when a take begins, forgotten by an assignment while its group and tags are looked
    up again: its stored state (an episode under way) is read again, and the episode ends."""
    interleaved = Interleaved(sink, assign, None)

    async def takes() -> None:
        await interleaved.pipeline.evaluate([points("nlp-a", [1.0, NAN])])
        interleaved.now_ms += INFO_RETRY_MS  # its group and tags are looked up again
        interleaved.during = "run_infos"
        await interleaved.pipeline.evaluate([points("nlp-a", [1.0], seq=3, first_step=2)])

    asyncio.run(takes())
    assert interleaved.during is None
    assert stored(sink) == [("nlp-a", "nan/acc/1/fired", "pending"), ("nlp-a", "nan/acc/1/resolved", "pending")]
