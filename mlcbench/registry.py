"""A small typed registry: unique names, helpful misses."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

from mlcbench.errors import PluginError
from mlcbench.options import unknown_key_error

T = TypeVar("T")

FAMILY_SUFFIX = "/*"


class Registry(Generic[T]):
    """Named items of one kind (datasets, backbones or losses).

    A name ending in ``/*`` registers a *family*: ``timm/*`` answers every ``timm/<model>``,
    and :meth:`lookup` hands back the part after the slash as the variant.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def check_new(self, name: str) -> None:
        """Raise unless ``name`` could be added."""
        if not name or name != name.strip():
            raise PluginError(f"Cannot register {self.kind} {name!r}: the name is empty or padded.")
        if name in self._items:
            raise PluginError(
                f"Duplicate {self.kind} {name!r}: another plugin already registered it."
            )

    def add(self, name: str, item: T) -> None:
        self.check_new(name)
        self._items[name] = item

    def lookup(self, name: str) -> tuple[T, str | None]:
        """Return the item for ``name`` and, for a family member, its variant."""
        if name in self._items:
            return self._items[name], None
        family, slash, variant = name.partition("/")
        if slash and variant and family + FAMILY_SUFFIX in self._items:
            return self._items[family + FAMILY_SUFFIX], variant
        raise PluginError(self.unknown_message(name))

    def get(self, name: str) -> T:
        return self.lookup(name)[0]

    def unknown_message(self, name: str) -> str:
        """``unknown loss 'focall' — did you mean 'focal'? (known: bce, focal)``"""
        return str(unknown_key_error(name, self.names(), "", self.kind)).removeprefix(": ")

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            self.lookup(name)
        except PluginError:
            return False
        return True

    def __iter__(self) -> Iterator[tuple[str, T]]:
        return iter(sorted(self._items.items()))

    def __len__(self) -> int:
        return len(self._items)
