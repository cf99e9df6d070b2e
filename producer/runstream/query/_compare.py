"""``compare()``: the curves of one metric for a few runs, as a frame and as an overlaid plot."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runstream.query._curves import check_request, curves_of
from runstream.query._deps import pandas, pyplot
from runstream.query._lookup import RunRef, find_runs, run_id_list

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client
    from matplotlib.axes import Axes
    from pandas import DataFrame


@dataclass(frozen=True)
class Comparison:
    """One metric of several runs. ``frame`` has the columns of ``curves()`` plus ``name``;
    ``labels`` maps each run id to its legend label (the run's name), in the order asked for."""

    key: str
    frame: DataFrame
    labels: dict[str, str]

    def plot(self, ax: Axes | None = None, *, band: bool = True) -> Axes:
        """Draw one line per run (step on x, the metric on y) on ``ax`` (a new figure if None) and
        return the Axes. ``band`` shades each bucket's min..max where the curve is downsampled."""
        if ax is None:
            _, ax = pyplot().subplots()
        for run_id, label in self.labels.items():
            curve = self.frame[self.frame["run_id"] == run_id]
            if curve.empty:
                continue
            (line,) = ax.plot(curve["step"].to_numpy(), curve["value"].to_numpy(), label=label)
            if band and (curve["min"] != curve["max"]).any():
                ax.fill_between(
                    curve["step"].to_numpy(),
                    curve["min"].to_numpy(),
                    curve["max"].to_numpy(),
                    color=line.get_color(),
                    alpha=0.2,
                    linewidth=0,
                )
        ax.set_xlabel("step")
        ax.set_ylabel(self.key)
        ax.legend()
        return ax


def run_labels(runs: Iterable[RunRef]) -> dict[str, str]:
    """Legend labels: a run's name; its id where the name is empty, both where names repeat."""
    refs = list(runs)
    counts = Counter(ref.name for ref in refs)
    labels = {}
    for ref in refs:
        if not ref.name:
            labels[ref.run_id] = ref.run_id
        elif counts[ref.name] > 1:
            labels[ref.run_id] = f"{ref.name} ({ref.run_id})"
        else:
            labels[ref.run_id] = ref.name
    return labels


def read_comparison(client: Client, run_ids: str | Iterable[str], key: str, points: int = 1000) -> Comparison:
    """See :func:`runstream.query.compare`."""
    pandas()  # a missing extra fails before any query
    check_request(key, points)
    runs = find_runs(client, run_id_list(run_ids))
    frame = curves_of(client, runs, key, points)
    frame.insert(1, "name", frame["run_id"].map({run_id: ref.name for run_id, ref in runs.items()}))
    return Comparison(key=key, frame=frame, labels=run_labels(runs.values()))
