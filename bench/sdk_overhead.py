"""Per-call cost of ``run.log()`` inside a training loop, against wandb (offline) and mlflow (local stores).

Every variant runs the same loop in this one process: build a fresh dict of 10 float metrics for step i,
then time only the logging call with ``time.perf_counter_ns()``. Variants, in order:

- a bare loop that only builds the dicts, and a no-op call timed like the others (the timer's floor);
- runstream with Kafka up, then ``finish()`` (how long it took, whether everything was delivered);
- runstream with Kafka down (bootstrap on a closed port): records stay in the SDK, finish gives up fast;
- peers, on fewer steps since they are slower (the per-call median is the figure that matters):
  wandb in offline mode, mlflow with its file store and with its sqlite store.

A peer that is not installed or refuses to start is skipped with a message and reported as null, so this
also runs from the main venv. Peers live in the ``bench`` extra:
``make bench-venv`` (locked in uv.lock).
Needs a running broker for the Kafka-up figures (`make kafka-up`; RUNSTREAM_KAFKA_BOOTSTRAP to use another).
Everything is written under one temporary directory, removed at the end.
Last line: one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil
from pydantic import TypeAdapter
from rich.console import Console
from rich.table import Table

import runstream
from runstream.settings import Settings

METRICS_PER_CALL = 10
KEYS = tuple(f"k{k}" for k in range(METRICS_PER_CALL))
# Port 1 needs root to listen on: in practice always closed, so connects fail fast ("Kafka down").
CLOSED_BOOTSTRAP = "127.0.0.1:1"
PEERS = ("wandb_offline", "mlflow_file", "mlflow_sqlite")
PEER_LABELS = {"wandb_offline": "wandb offline", "mlflow_file": "mlflow file store", "mlflow_sqlite": "mlflow sqlite"}
PEER_PACKAGES = {"wandb_offline": "wandb", "mlflow_file": "mlflow", "mlflow_sqlite": "mlflow"}
# Steps timed per peer: default and --quick. sqlite costs milliseconds per call, hence fewer steps.
PEER_STEPS = {"wandb_offline": 5_000, "mlflow_file": 5_000, "mlflow_sqlite": 1_000}
PEER_STEPS_QUICK = {"wandb_offline": 1_000, "mlflow_file": 1_000, "mlflow_sqlite": 200}

console = Console(stderr=True)
if not console.is_terminal:  # rich assumes 80 columns off a terminal, which wraps the table's labels
    console.width = max(console.width, 110)


# -- hardware sampling hook ------------------------------------------------------------------------------
def hardware_sample_figures(samples: int = 300) -> dict[str, Any]:
    """Cost of one hardware sample (median microseconds), merged into the final JSON.

    - ``hw_sample_us``: this machine as it is (psutil, plus its GPUs when NVML works here);
    - ``hw_sample_8_simulated_gpus_us``: 8 GPUs through the test suite's NVML stand-in (our own cost);
    - ``hw_sample_8_real_gpu_reads_us``: where NVML works, 8 GPUs' worth of real NVML calls (each visible
      GPU read repeatedly), the figure the 2 ms target is about.
    """
    from runstream.hardware import HardwareSampler

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' NVML stand-in
    from tests.producer.fake_nvml import FakeGpu, FakeNvml

    def median_us(sampler: HardwareSampler) -> float:
        sampler.sample()  # first sample primes the rate counters
        costs = []
        for _ in range(samples):
            start = time.perf_counter_ns()
            sampler.sample()
            costs.append(time.perf_counter_ns() - start)
        sampler.stop()
        return round(statistics.median(costs) / 1000, 1)

    def ignore(_: Any) -> None:
        return None

    here = HardwareSampler(1.0, ignore)
    figures: dict[str, Any] = {"hw_gpus_here": len(here.gpu_devices), "hw_sample_us": median_us(here)}
    gpus = [FakeGpu(uuid=f"GPU-{i:08d}", util=50, memory_total=80 << 30, limit_mw=700_000) for i in range(8)]
    figures["hw_sample_8_simulated_gpus_us"] = median_us(HardwareSampler(1.0, ignore, nvml=FakeNvml(gpus)))
    real = _eight_gpus_of_real_nvml()
    figures["hw_sample_8_real_gpu_reads_us"] = (
        median_us(HardwareSampler(1.0, ignore, nvml=real, all_gpus=True)) if real is not None else None
    )
    return figures


def _eight_gpus_of_real_nvml() -> Any | None:
    """pynvml, presenting 8 devices backed by the real ones (so 8 GPUs' worth of real calls), or None."""
    try:
        import pynvml

        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
    except Exception:
        return None
    if count == 0:
        return None

    class EightGpus:
        def __getattr__(self, name: str) -> Any:
            return getattr(pynvml, name)

        def nvmlDeviceGetCount(self) -> int:  # noqa: N802 - pynvml's names
            return 8

        def nvmlDeviceGetHandleByIndex(self, index: int) -> Any:  # noqa: N802 - pynvml's names
            return pynvml.nvmlDeviceGetHandleByIndex(index % count)

        def nvmlDeviceGetUUID(self, handle: Any) -> str:  # noqa: N802 - pynvml's names
            return f"GPU-virtual-{id(handle)}"

    return EightGpus()


# -- timing ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Timing:
    """Summary of one variant's per-call samples, in microseconds."""

    calls: int
    median_us: float
    mean_us: float
    p99_us: float

    @classmethod
    def of(cls, samples_ns: list[int]) -> Timing:
        ordered = sorted(samples_ns)
        p99_index = max(0, math.ceil(0.99 * len(ordered)) - 1)
        return cls(
            calls=len(ordered),
            median_us=statistics.median(ordered) / 1000,
            mean_us=statistics.fmean(ordered) / 1000,
            p99_us=ordered[p99_index] / 1000,
        )


def make_metrics(step: int) -> dict[str, float]:
    """Ten fresh floats derived from the step, as a training loop would produce each step."""
    base = 1.0 / (step + 1)
    return {key: base * (k + 1) + step for k, key in enumerate(KEYS)}


def time_calls(log: Callable[..., Any], steps: int) -> list[int]:
    """Call ``log(metrics, step=i)`` for each step; only the call itself is inside the timed region."""
    samples = [0] * steps  # preallocated: no list growth between timed calls
    clock = time.perf_counter_ns
    for step in range(steps):
        metrics = make_metrics(step)
        start = clock()
        log(metrics, step=step)
        samples[step] = clock() - start
    return samples


def bare_loop_us_per_step(steps: int) -> float:
    """The loop with no logging at all: what building the dicts costs per step."""
    start = time.perf_counter_ns()
    for step in range(steps):
        make_metrics(step)
    return (time.perf_counter_ns() - start) / steps / 1000


def _noop(metrics: dict[str, float], *, step: int) -> None:
    """Stands in for a logging call, to measure the timer and call overhead every variant includes."""


@contextlib.contextmanager
def measuring() -> Iterator[None]:
    """Start each variant from the same state: no garbage left by the previous one, nothing on stdout
    (only the final JSON line goes there, whatever a library prints)."""
    gc.collect()
    with contextlib.redirect_stdout(sys.stderr):
        yield


def wait_for_threads(baseline: int, timeout_s: float = 10.0) -> None:
    """Let background threads of the previous variant (an SDK sender still giving up on a closed port)
    end, so they do not compete for the GIL with the next variant."""
    deadline = time.monotonic() + timeout_s
    while threading.active_count() > baseline and time.monotonic() < deadline:
        time.sleep(0.05)


# -- runstream -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SdkResult:
    timing: Timing
    finish_seconds: float
    delivered: bool
    pending_records: int
    rss_growth_mb: float
    """Resident memory after the loop minus before ``init()``: what the SDK held while logging."""
    spool_mb: float
    """Bytes in the run's spool when the loop ended (records not yet acknowledged by Kafka)."""


def sdk_settings(workdir: Path, label: str, prefix: str, finish_timeout_s: float, **updates: Any) -> Settings:
    """The environment's settings with benchmark overrides, set only where ``Settings`` has the field
    (the SDK changes; an override it does not know is reported, not forced)."""
    fields = Settings.model_fields
    # A topic prefix of our own keeps benchmark records away from a worker reading the real topics.
    wanted: dict[str, Any] = {"topic_prefix": prefix, "finish_timeout_s": finish_timeout_s, **updates}
    if "runs_dir" in fields:  # the SDK's on-disk spool: keep it out of the home directory
        wanted["runs_dir"] = str(workdir / label / "runs")
    unknown = sorted(set(wanted) - set(fields))
    if unknown:
        console.print(f"[yellow]Settings has no field {', '.join(unknown)}: left at its default[/]")
    # model_copy does not validate: pass each value through its field's type (runs_dir wants a Path).
    update = {
        name: TypeAdapter(fields[name].annotation or Any).validate_python(value)
        for name, value in wanted.items()
        if name in fields
    }
    return Settings().model_copy(update=update)


def run_runstream(settings: Settings, name: str, steps: int, finish_timeout: float) -> SdkResult:
    process = psutil.Process()
    rss_before = process.memory_info().rss
    # The context manager finishes the run if the loop fails; finish() again only returns the first report.
    with runstream.init(project="bench", team="bench", name=name, settings=settings) as run:
        samples = time_calls(run.log, steps)
        run.flush(1.0)  # let the sender pack what is queued (with Kafka down it goes to the spool)
        rss_growth = process.memory_info().rss - rss_before
        spool = run.spool_path
        spool_bytes = sum(p.stat().st_size for p in spool.glob("*")) if spool is not None and spool.exists() else 0
        started = time.perf_counter()
        report = run.finish(timeout=finish_timeout)
        finish_seconds = time.perf_counter() - started
    return SdkResult(
        Timing.of(samples),
        finish_seconds,
        bool(report.complete),
        int(report.pending_records),
        round(rss_growth / 2**20, 1),
        round(spool_bytes / 2**20, 1),
    )


def reachable(settings: Settings, timeout_s: float = 1.0) -> bool:
    """Whether the first bootstrap server accepts a TCP connection."""
    host, _, port = settings.bootstrap_servers[0].rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


# -- peers -----------------------------------------------------------------------------------------------
class PeerUnavailable(Exception):  # noqa: N818 - reads as a state: the peer is unavailable
    """The peer cannot run here (not installed, or this version refuses the configuration)."""


def quiet_peer_environment(workdir: Path, allow_mlflow_file_store: bool) -> None:
    """Before the peers are imported: no console noise, no telemetry, no files outside ``workdir``."""
    peer_home = workdir / "peer-home"
    os.environ.update(
        {
            "WANDB_SILENT": "true",
            "WANDB_CONFIG_DIR": str(peer_home / "wandb-config"),
            "WANDB_CACHE_DIR": str(peer_home / "wandb-cache"),
            "WANDB_DATA_DIR": str(peer_home / "wandb-data"),
            "MLFLOW_LOGGING_LEVEL": "WARNING",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            # mlflow's telemetry id file goes to $XDG_CONFIG_HOME/mlflow (default ~/.config)
            "XDG_CONFIG_HOME": str(peer_home / "config"),
        }
    )
    os.environ.setdefault("DO_NOT_TRACK", "true")
    if allow_mlflow_file_store:
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"


def peer_version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def wandb_offline(workdir: Path, steps: int) -> Timing:
    try:
        import wandb
    except ImportError as exc:
        raise PeerUnavailable(f"wandb is not importable here ({exc}); install the bench extra") from exc
    # console="off": wandb otherwise wraps sys.stdout/sys.stderr to capture the job's output.
    run = wandb.init(mode="offline", dir=str(workdir), project="bench", settings=wandb.Settings(console="off"))
    try:
        # run.log is the very method wandb.init binds to wandb.log.
        samples = time_calls(run.log, steps)
    finally:
        run.finish()
    return Timing.of(samples)


def mlflow_store(tracking_uri: str, artifacts: Path, steps: int) -> Timing:
    try:
        import mlflow
        from mlflow.exceptions import MlflowException
    except ImportError as exc:
        raise PeerUnavailable(f"mlflow is not importable here ({exc}); install the bench extra") from exc
    mlflow.set_tracking_uri(tracking_uri)
    try:
        # An experiment of our own: mlflow's default artifact root is ./mlruns in the working directory.
        experiment_id = mlflow.create_experiment(f"bench-{uuid.uuid4().hex[:8]}", artifact_location=artifacts.as_uri())
    except MlflowException as exc:
        if "MLFLOW_ALLOW_FILE_STORE" in str(exc):
            first = str(exc).split(". ")[0]
            raise PeerUnavailable(
                f"mlflow {mlflow.__version__} refuses the file store: {first}. "
                "Opt in with --mlflow-allow-file-store (sets MLFLOW_ALLOW_FILE_STORE=true)"
            ) from exc
        raise
    with mlflow.start_run(experiment_id=experiment_id):  # ends the run (as FAILED) if the loop raises
        samples = time_calls(mlflow.log_metrics, steps)
    return Timing.of(samples)


@dataclass(frozen=True)
class PeerResult:
    timing: Timing | None
    note: str | None


def own_deprecations(caught: list[warnings.WarningMessage], package: str) -> list[str]:
    """Deprecations the peer itself raised, once each. A dependency's own warning class (SQLAlchemy's,
    say) is left out even when mlflow triggers it: it says nothing about what the peer supports."""
    messages = [
        f"{w.category.__name__}: {w.message}"
        for w in caught
        if issubclass(w.category, (DeprecationWarning, FutureWarning))
        and w.category.__module__.split(".")[0] in ("builtins", package)
        and f"{os.sep}{package}{os.sep}" in w.filename
    ]
    return list(dict.fromkeys(messages))


def run_peer(name: str, workdir: Path, steps: int) -> PeerResult:
    """One peer, isolated: a missing or failing peer is reported and the benchmark goes on."""
    peer_dir = workdir / name
    peer_dir.mkdir()
    runners: dict[str, Callable[[], Timing]] = {
        "wandb_offline": lambda: wandb_offline(peer_dir, steps),
        "mlflow_file": lambda: mlflow_store(f"file:{peer_dir / 'mlruns'}", peer_dir / "artifacts", steps),
        "mlflow_sqlite": lambda: mlflow_store(f"sqlite:///{peer_dir / 'mlflow.db'}", peer_dir / "artifacts", steps),
    }
    notes: list[str] = []
    timing: Timing | None = None
    console.print(f"{PEER_LABELS[name]}: {steps:,} steps")
    # Deprecations raised by the peer are part of the result (which store is still supported), not noise.
    with warnings.catch_warnings(record=True) as caught, measuring():
        warnings.simplefilter("always", DeprecationWarning)
        warnings.simplefilter("always", FutureWarning)
        try:
            timing = runners[name]()
        except PeerUnavailable as exc:
            console.print(f"[yellow]  skipped: {exc}[/]")
            notes.append(f"skipped: {exc}")
        except Exception as exc:
            console.print_exception(max_frames=8)
            notes.append(f"failed: {exc!r}")
    if name == "mlflow_file" and timing is not None and os.environ.get("MLFLOW_ALLOW_FILE_STORE"):
        notes.append("ran with MLFLOW_ALLOW_FILE_STORE=true: recent mlflow refuses the file store by default")
    for message in own_deprecations(caught, PEER_PACKAGES[name]):
        console.print(f"[yellow]  {message}[/]")
        notes.append(message)
    return PeerResult(timing, "; ".join(notes) or None)


def teardown_peers() -> None:
    """Stop wandb's background service before its directory is removed."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and hasattr(wandb, "teardown"):
        try:
            wandb.teardown()
        except Exception as exc:
            console.print(f"[yellow]wandb teardown failed: {exc!r}[/]")


# -- report ----------------------------------------------------------------------------------------------
def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def print_table(
    rows: list[tuple[str, Timing | None, str]], reference: Timing | None, bare_us: float, floor: Timing
) -> None:
    table = Table(title=f"log() of {METRICS_PER_CALL} scalars: microseconds per call")
    for column in ("variant", "calls", "median", "mean", "p99", "us/point", "x runstream"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for label, timing, note in rows:
        if timing is None:
            table.add_row(label, "-", "-", "-", "-", "-", note)
            continue
        ratio = f"{timing.median_us / reference.median_us:.1f}" if reference and reference.median_us else "-"
        table.add_row(
            label,
            f"{timing.calls:,}",
            f"{timing.median_us:.2f}",
            f"{timing.mean_us:.2f}",
            f"{timing.p99_us:.2f}",
            f"{timing.median_us / METRICS_PER_CALL:.3f}",
            ratio,
        )
    table.add_row("bare loop: dicts only, per step", "", "", f"{bare_us:.2f}", "", "", "")
    table.add_row("no-op call: timer floor", f"{floor.calls:,}", f"{floor.median_us:.2f}", f"{floor.mean_us:.2f}")
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, help="runstream steps (default 100,000; 10,000 with --quick)")
    parser.add_argument("--peer-steps", type=int, help="steps for every peer (default 5,000, 1,000 for sqlite)")
    parser.add_argument("--quick", action="store_true", help="small run for a smoke check")
    parser.add_argument("--finish-timeout", type=float, default=60.0, help="finish() wait with Kafka up, seconds")
    parser.add_argument("--down-finish-timeout", type=float, default=2.0, help="finish() wait with Kafka down")
    parser.add_argument("--no-peers", action="store_true", help="runstream variants only")
    parser.add_argument(
        "--mlflow-allow-file-store",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure mlflow's file store too (mlflow 3 refuses it unless MLFLOW_ALLOW_FILE_STORE=true)",
    )
    args = parser.parse_args()
    steps: int = args.steps or (10_000 if args.quick else 100_000)
    peer_steps = {
        name: args.peer_steps or (PEER_STEPS_QUICK if args.quick else PEER_STEPS)[name]
        for name in ([] if args.no_peers else PEERS)
    }

    unique = uuid.uuid4().hex[:8]
    baseline_threads = threading.active_count()
    with tempfile.TemporaryDirectory(prefix="runstream-sdk-overhead-", ignore_cleanup_errors=True) as tmp:
        workdir = Path(tmp)
        up_settings = sdk_settings(workdir, "up", f"bench-{unique}.", args.finish_timeout)
        down_settings = sdk_settings(
            workdir, "down", f"bench-{unique}.", args.down_finish_timeout, kafka_bootstrap=CLOSED_BOOTSTRAP
        )
        kafka_up = reachable(up_settings)
        console.print(
            f"sdk_overhead: {steps:,} steps of {METRICS_PER_CALL} metrics; Kafka at {up_settings.kafka_bootstrap} "
            + ("is up" if kafka_up else "[red]is NOT reachable: the 'Kafka up' figures are without a broker[/]")
        )
        errors: dict[str, str] = {}

        with measuring():
            bare_us = bare_loop_us_per_step(steps)
            floor = Timing.of(time_calls(_noop, steps))

        results: dict[str, SdkResult | None] = {}
        for key, label, settings, timeout in (
            ("up", "Kafka up", up_settings, args.finish_timeout),
            ("down", "Kafka down", down_settings, args.down_finish_timeout),
        ):
            console.print(f"runstream, {label}: {steps:,} steps")
            try:
                with measuring():
                    results[key] = run_runstream(settings, f"sdk-overhead-{key}-{unique}", steps, timeout)
            except Exception as exc:  # the SDK is a moving target: report and go on with the rest
                console.print_exception(max_frames=12)
                errors[key] = repr(exc)
                results[key] = None
            wait_for_threads(baseline_threads)
            if (result := results[key]) is not None:
                console.print(
                    f"  finish: {result.finish_seconds:.2f}s, "
                    + ("all delivered" if result.delivered else f"{result.pending_records} records pending")
                )
        up, down = results["up"], results["down"]

        peers: dict[str, PeerResult] = {}
        if peer_steps:
            quiet_peer_environment(workdir, args.mlflow_allow_file_store)
            try:
                for name, count in peer_steps.items():
                    peers[name] = run_peer(name, workdir, count)
            finally:
                teardown_peers()

    reference = up.timing if up else None
    rows: list[tuple[str, Timing | None, str]] = [
        ("runstream, Kafka up", reference, "failed" if "up" in errors else ""),
        ("runstream, Kafka down", down.timing if down else None, "failed" if "down" in errors else ""),
    ]
    rows += [
        (PEER_LABELS[name], peer.timing, "failed" if (peer.note or "").startswith("failed") else "skipped")
        for name, peer in peers.items()
    ]
    print_table(rows, reference, bare_us, floor)

    peer_timings = {name: peers[name].timing if name in peers else None for name in PEERS}
    peer_medians = {name: timing.median_us if timing else None for name, timing in peer_timings.items()}
    available = {name: median for name, median in peer_medians.items() if median is not None}
    best_peer = min(available, key=lambda name: available[name]) if available else None
    speedup = available[best_peer] / reference.median_us if best_peer and reference and reference.median_us else None
    down_ratio = down.timing.median_us / reference.median_us if down and reference and reference.median_us else None
    if speedup is not None and best_peer is not None:
        console.print(f"runstream log() is {speedup:.1f}x faster than the fastest peer ({PEER_LABELS[best_peer]})")
    if down_ratio is not None:
        console.print(f"Kafka down / Kafka up, median: {down_ratio:.2f}")

    figures: dict[str, Any] = {
        "bench": "sdk_overhead",
        "steps": steps,
        "peer_steps": {name: peer_steps.get(name) for name in PEERS},
        "metrics_per_call": METRICS_PER_CALL,
        "us_per_call": rounded(reference.median_us if reference else None),
        "us_per_call_mean": rounded(reference.mean_us if reference else None),
        "us_per_call_p99": rounded(reference.p99_us if reference else None),
        "us_per_point": rounded(reference.median_us / METRICS_PER_CALL if reference else None, 4),
        "finish_seconds": rounded(up.finish_seconds if up else None),
        "delivered": bool(up and up.delivered),
        "kafka_reachable": kafka_up,
        "us_per_call_kafka_down": rounded(down.timing.median_us if down else None),
        "us_per_call_kafka_down_mean": rounded(down.timing.mean_us if down else None),
        "us_per_call_kafka_down_p99": rounded(down.timing.p99_us if down else None),
        "kafka_down_ratio": rounded(down_ratio),
        "kafka_down_finish_seconds": rounded(down.finish_seconds if down else None),
        "kafka_down_pending_records": down.pending_records if down else None,
        "kafka_down_rss_growth_mb": down.rss_growth_mb if down else None,
        "kafka_down_spool_mb": down.spool_mb if down else None,
        "kafka_up_rss_growth_mb": up.rss_growth_mb if up else None,
        "max_unsent_mb": round(down_settings.max_unsent_bytes / 2**20, 1),
        "bare_loop_us_per_step": rounded(bare_us),
        "timer_floor_us": rounded(floor.median_us),
        "peer_us_per_call": {name: rounded(median) for name, median in peer_medians.items()},
        "peer_us_per_call_p99": {name: rounded(t.p99_us) if t else None for name, t in peer_timings.items()},
        "peer_notes": {name: peer.note for name, peer in peers.items() if peer.note},
        "peer_versions": {package: peer_version(package) for package in ("wandb", "mlflow")},
        "best_peer": best_peer,
        "speedup_vs_best_peer": rounded(speedup, 2),
        "runstream_errors": errors,
        "runstream_version": runstream.__version__,
        "python": platform.python_version(),
    }
    figures.update(hardware_sample_figures())
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
