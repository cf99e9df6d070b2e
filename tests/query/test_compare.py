"""compare(): the curves of several runs with their names, drawn as one labelled line per run."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.collections import PolyCollection

from runstream import query
from runstream.query._compare import run_labels
from runstream.query._lookup import RunRef
from tests.query.conftest import Seeded

RUNS = ["vision-0-1", "vision-0-0", "vision-1-2"]


def seeded_name(seeded: Seeded, run_id: str) -> str:
    run = seeded.facts.run(run_id)
    return f"{run_id} ({run.params['optimizer']}, lr={run.params['lr']})"


def test_plot_draws_one_labelled_line_per_run(seeded: Seeded) -> None:
    comparison = query.compare(RUNS, "loss", points=500, settings=seeded.settings)
    assert comparison.key == "loss"
    assert list(comparison.frame.columns) == ["run_id", "name", "step", "value", "min", "max"]
    assert list(comparison.labels) == RUNS
    assert list(comparison.labels.values()) == [seeded_name(seeded, run_id) for run_id in RUNS]

    ax = comparison.plot()
    try:
        lines = ax.get_lines()
        assert [line.get_label() for line in lines] == [seeded_name(seeded, run_id) for run_id in RUNS]
        for line, run_id in zip(lines, RUNS, strict=True):
            curve = comparison.frame[comparison.frame["run_id"] == run_id]
            assert len(curve) == 125
            assert set(curve["name"]) == {seeded_name(seeded, run_id)}
            np.testing.assert_array_equal(line.get_xdata(), curve["step"].to_numpy())
            np.testing.assert_array_equal(line.get_ydata(), curve["value"].to_numpy())
        # Downsampled curves carry a min..max band per run, in the line's colour.
        bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
        assert len(bands) == len(RUNS)
        assert ax.get_xlabel() == "step"
        assert ax.get_ylabel() == "loss"
        legend = ax.get_legend()
        assert legend is not None
        assert [text.get_text() for text in legend.get_texts()] == list(comparison.labels.values())
    finally:
        plt.close("all")


def test_plot_on_given_axes_without_band_for_raw_points(seeded: Seeded) -> None:
    figure, ax = plt.subplots()
    try:
        comparison = query.compare(["vision-0-0", "nlp-0-0"], "acc", points=2000, settings=seeded.settings)
        assert comparison.plot(ax=ax) is ax
        assert len(ax.get_lines()) == 2
        assert len(np.asarray(ax.get_lines()[0].get_xdata())) == 2000
        assert not ax.collections  # raw points: min == max, nothing to shade
    finally:
        plt.close(figure)


@pytest.mark.parametrize(
    ("names", "labels"),
    [
        (["a", "b"], ["a", "b"]),
        (["same", "same", "other"], ["same (r0)", "same (r1)", "other"]),
        (["", "b"], ["r0", "b"]),
    ],
)
def test_labels_are_names_made_unique(names: list[str], labels: list[str]) -> None:
    refs = [RunRef(f"r{i}", "t", "p", name) for i, name in enumerate(names)]
    assert list(run_labels(refs).values()) == labels
