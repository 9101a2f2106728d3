"""One registry helper for every pluggable part: architectures, losses, optimisers, schedulers, samplers, TTA.

A :class:`Registry` maps names to parts of one kind. Registering a name twice is refused (a plug-in cannot
silently replace a built-in), an unknown name is one error that lists the choices, and the configuration schema
takes its allowed names from the registries (:meth:`Registry.field`) instead of repeating them as literals.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, WithJsonSchema

from ptxseg.errors import PtxsegError

T = TypeVar("T")


class Registry(Generic[T]):
    """Names → parts of one ``kind``.

    Args:
        kind: what a part is, for messages ("architecture", "loss", ...).
        option: the configuration key an unknown name is reported under (e.g. ``"loss.name"``).
        loader: called once before the first look-up, to import the modules whose decorators fill the registry.
    """

    def __init__(self, kind: str, option: str, loader: Callable[[], None] | None = None) -> None:
        self.kind, self.option = kind, option
        self._parts: dict[str, T] = {}
        self._loader = loader

    def _load(self) -> None:
        if self._loader is not None:
            loader, self._loader = self._loader, None
            loader()

    def register(self, name: str, part: T | None = None) -> Any:
        """Add ``part`` under ``name``; without ``part``, a decorator that adds the decorated object.

        Raises:
            ValueError: ``name`` is already registered (a programming error, so not a user-facing PtxsegError).
        """

        def add(obj: T) -> T:
            if name in self._parts:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._parts[name] = obj
            return obj

        return add if part is None else add(part)

    def names(self) -> list[str]:
        """The registered names, sorted."""
        self._load()
        return sorted(self._parts)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._parts

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, T]]:
        """``(name, part)`` pairs, sorted by name."""
        return [(name, self._parts[name]) for name in self.names()]

    def __getitem__(self, name: str) -> T:
        self._load()
        if name not in self._parts:
            raise PtxsegError(self.option, f"unknown {self.kind} {name!r}; choose one of {', '.join(self.names())}")
        return self._parts[name]

    def check(self, name: str) -> str:
        """``name`` when registered; ``ValueError`` listing the choices otherwise (for pydantic validators)."""
        if name not in self:
            raise ValueError(f"unknown {self.kind} {name!r}; choose one of {', '.join(self.names())}")
        return name

    def field(self) -> Any:
        """A pydantic type: a string that must name a registered part (its JSON schema lists today's names)."""
        return Annotated[str, AfterValidator(self.check), WithJsonSchema({"type": "string", "enum": self.names()})]
