"""Fusion types, registered by name (`model.fusion`).

A new fusion type is one new file in this folder holding a `Fusion` subclass decorated with
`@register_fusion("name")`, plus its import below; no network code changes. Outside code (a
plug-in, a test) may register its own the same way. `registered_fusions()` is what config
validation accepts.
"""

from __future__ import annotations

from avsf.model.fusions.base import Fusion, Junction

FUSIONS: dict[str, Fusion] = {}


def register_fusion(name: str):
    """Class decorator: register one instance of a `Fusion` subclass under `name`."""

    def register(cls: type[Fusion]) -> type[Fusion]:
        if name in FUSIONS:
            raise ValueError(f"fusion '{name}' is registered twice ({type(FUSIONS[name]).__name__}, {cls.__name__})")
        if cls.into not in ("slow", "fast") or cls.aligns_to not in ("slow", "fast", None):
            raise ValueError(f"fusion '{name}': into must be 'slow' or 'fast' and aligns_to 'slow', 'fast' or None")
        cls.name = name
        FUSIONS[name] = cls()
        return cls

    return register


def registered_fusions() -> tuple[str, ...]:
    return tuple(FUSIONS)


def get_fusion(name: str) -> Fusion:
    from avsf.config import ConfigError

    try:
        return FUSIONS[name]
    except KeyError:
        raise ConfigError(f"model.fusion: '{name}' is not one of {', '.join(FUSIONS)}") from None


# The built-in types (their modules register themselves on import): the paper's three in its
# order, then the measuring variant.
from avsf.model.fusions import a_fs, a_f_s, av_nonlocal, a_f_s_broadcast  # noqa: E402,F401,I001

__all__ = ["FUSIONS", "Fusion", "Junction", "get_fusion", "register_fusion", "registered_fusions"]
