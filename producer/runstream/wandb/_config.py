"""``wandb.config``: the run's hyperparameters with attribute and item access, stored as params."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any

from runstream_core.log import WarnOnce, get_logger

log = get_logger("runstream.wandb")


def config_items(given: Any) -> dict[str, Any]:
    """What W&B takes as a config: a mapping, an ``argparse.Namespace`` or any object with ``__dict__``."""
    if given is None:
        return {}
    if isinstance(given, Mapping):
        return dict(given)
    if isinstance(given, argparse.Namespace) or hasattr(given, "__dict__"):
        return {k: v for k, v in vars(given).items() if not k.startswith("_")}
    raise TypeError(f"config must be a dict or an argparse.Namespace, got {type(given).__name__}")


class Config(MutableMapping[str, Any]):
    """``config.lr``, ``config["lr"]``, ``config.update({...})``, ``config.get("lr", 0.1)``.

    Every new or changed key is sent to the run's params (nested dicts as ``a.b`` keys). Like W&B, changing
    a value already set warns once unless ``update(..., allow_val_change=True)``; the new value is kept.
    """

    def __init__(self, send: Callable[[dict[str, Any]], None] | None = None, warn_once: WarnOnce | None = None) -> None:
        object.__setattr__(self, "_items", {})
        object.__setattr__(self, "_send", send)
        object.__setattr__(self, "_warn_once", warn_once or WarnOnce(log))

    def _attach(self, send: Callable[[dict[str, Any]], None]) -> None:
        object.__setattr__(self, "_send", send)

    def _set(self, values: Mapping[str, Any], allow_val_change: bool) -> None:
        items: dict[str, Any] = self._items
        changed = {k: v for k, v in values.items() if k not in items or items[k] != v}
        if not allow_val_change:
            for key in changed:
                if key in items:
                    self._warn_once(
                        ("config-change", key),
                        "config value changed after it was set; pass allow_val_change=True to silence this",
                        key=key,
                    )
        items.update(changed)
        if changed and self._send is not None:
            self._send(changed)

    def update(self, other: Any = None, /, allow_val_change: bool = False, **kwargs: Any) -> None:
        self._set({str(k): v for k, v in {**config_items(other), **kwargs}.items()}, allow_val_change)

    def setdefaults(self, values: Mapping[str, Any]) -> None:
        """Set the keys of ``values`` that are not set yet (W&B's ``config.setdefaults``)."""
        self._set({k: v for k, v in values.items() if k not in self._items}, True)

    def as_dict(self) -> dict[str, Any]:
        return dict(self._items)

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._set({str(key): value}, False)

    def __delitem__(self, key: str) -> None:
        del self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self._items[name]
        except KeyError:
            raise AttributeError(f"config has no key {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __repr__(self) -> str:
        return f"Config({self._items!r})"
