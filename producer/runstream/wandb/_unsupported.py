"""W&B features runstream does not store yet: media, tables, artifacts, sweeps, ``watch``.

Each warns once (by name) and does nothing, so a script that uses them still trains and logs its
scalars. A media object passed to ``log()`` is left out of the step.
"""

from __future__ import annotations

from typing import Any

from runstream_core.log import WarnOnce, get_logger

log = get_logger("runstream.wandb")
warn_once = WarnOnce(log)


def unsupported(what: str) -> None:
    warn_once(("unsupported", what), f"runstream.wandb: {what} is not supported yet; it does nothing")


class Unsupported:
    """Accepts any arguments, and any attribute or method call (``artifact.add_file(...)``), doing nothing."""

    _what = "this feature"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        unsupported(self._what)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _nothing

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: not supported by runstream.wandb>"


def _nothing(*args: Any, **kwargs: Any) -> None:
    return None


def _stub(name: str, what: str) -> type[Unsupported]:
    return type(name, (Unsupported,), {"_what": what, "__doc__": f"{what}: not supported yet (does nothing)."})


Image = _stub("Image", "wandb.Image (media)")
Audio = _stub("Audio", "wandb.Audio (media)")
Video = _stub("Video", "wandb.Video (media)")
Html = _stub("Html", "wandb.Html (media)")
Object3D = _stub("Object3D", "wandb.Object3D (media)")
Molecule = _stub("Molecule", "wandb.Molecule (media)")
Histogram = _stub("Histogram", "wandb.Histogram (media)")
Table = _stub("Table", "wandb.Table (tables)")
Artifact = _stub("Artifact", "wandb.Artifact (artifacts)")


class _Plot:
    """``wandb.plot.line(...)`` and the other chart presets: not supported yet."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _stub(name, f"wandb.plot.{name} (charts)")


plot = _Plot()


def is_unsupported_value(value: Any) -> bool:
    return isinstance(value, Unsupported)


def watch(*args: Any, **kwargs: Any) -> None:
    unsupported("wandb.watch")


def unwatch(*args: Any, **kwargs: Any) -> None:
    unsupported("wandb.unwatch")


def save(*args: Any, **kwargs: Any) -> bool:
    unsupported("wandb.save (files)")
    return False


def restore(*args: Any, **kwargs: Any) -> None:
    unsupported("wandb.restore (files)")


def log_artifact(*args: Any, **kwargs: Any) -> Unsupported:
    unsupported("log_artifact (artifacts)")
    return Artifact()


def use_artifact(*args: Any, **kwargs: Any) -> Unsupported:
    unsupported("use_artifact (artifacts)")
    return Artifact()


def log_model(*args: Any, **kwargs: Any) -> None:
    unsupported("log_model (artifacts)")


def sweep(*args: Any, **kwargs: Any) -> str:
    """Returns a sweep id that names no sweep."""
    unsupported("wandb.sweep (sweeps)")
    return "unsupported-sweep"


def agent(*args: Any, **kwargs: Any) -> None:
    """Runs nothing: the sweep's function is not called."""
    unsupported("wandb.agent (sweeps)")
