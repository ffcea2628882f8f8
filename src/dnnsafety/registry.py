"""One small generic registry: plug-ins register themselves by name with a decorator.

Registering a class sets its ``name`` attribute to the registered name, so a plug-in states
its name once, in the decorator::

    @CLUSTERERS.register("dbscan", help="DBSCAN, eps and min_samples chosen by silhouette.")
    class DBSCANClusterer(Clusterer): ...

    DBSCANClusterer.name  # "dbscan"
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from dnnsafety.exceptions import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects (classes or factories) of one kind.

    Parameters
    ----------
    kind
        What the registry holds, used in error messages ("dataset", "model", ...).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, help: str = "") -> Callable[[T], T]:
        """Decorator that registers an object under ``name``.

        A class gets ``cls.name = name``; one class can hold only one name.

        Raises
        ------
        ValueError
            If ``name`` is taken, or the class is already registered under another name.
        """

        def decorate(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            if isinstance(obj, type):
                own = obj.__dict__.get("name")
                if isinstance(own, str) and own != name and own in self._items:
                    raise ValueError(
                        f"{obj.__name__} is already registered as {self.kind} {own!r}; "
                        f"register a subclass as {name!r} instead."
                    )
                obj.name = name  # type: ignore[attr-defined]
            self._items[name] = obj
            self._help[name] = help or (getattr(obj, "__doc__", "") or "").strip().split("\n")[0]
            return obj

        return decorate

    def get(self, name: str) -> T:
        """Return the object registered as ``name`` or raise a clear error."""
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise ConfigError(f"Unknown {self.kind} {name!r}. Choose one of: {known}.") from None

    def create(self, name: str, params: Mapping[str, Any] | None = None, **offered: Any) -> Any:
        """Build the entry ``name`` with ``params`` (from config) and the ``offered`` values.

        This is how orchestrators build plug-ins from a ``{name, params}`` config table:
        ``REDUCERS.create("umap", {"n_neighbors": 30}, random_state=seed)``. An offered value
        (the run's seed, say) is passed only if the entry takes that argument, and ``params``
        override it.

        Raises
        ------
        ConfigError
            If ``name`` is unknown or ``params`` names an argument the entry does not take.
        """
        factory: Any = self.get(name)
        given = dict(params or {})
        try:
            accepted: Mapping[str, inspect.Parameter] | None = inspect.signature(factory).parameters
        except (TypeError, ValueError):  # pragma: no cover - callables without a signature
            accepted = None
        if accepted is not None and not any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()
        ):
            unknown = sorted(set(given) - set(accepted))
            if unknown:
                valid = ", ".join(sorted(accepted)) or "(none)"
                raise ConfigError(
                    f"The {self.kind} {name!r} takes no parameter(s) {', '.join(unknown)}. "
                    f"Valid parameters: {valid}."
                )
            offered = {k: v for k, v in offered.items() if k in accepted}
        return factory(**{**offered, **given})

    def describe(self, name: str) -> str:
        """One-line description of a registered entry."""
        return self._help.get(name, "")

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def unregister(self, name: str) -> None:
        """Remove ``name`` (for tests that register plug-ins at run time)."""
        self._items.pop(name, None)
        self._help.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
