"""The references' keyword arguments are the public op's: its signature is the one place they are
written (names, defaults), so an oracle cannot drift from the op it checks."""

from __future__ import annotations

import functools
import inspect

_REQUIRED = inspect.Parameter.empty


@functools.cache
def _keywords(op_name: str, drop: tuple[str, ...]) -> dict[str, object]:
    from .. import ops  # imported on first call: the op modules import the references

    params = inspect.signature(getattr(ops, op_name)).parameters.values()
    return {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY and p.name not in drop}


def op_keywords(
    op_name: str, options: dict, *, drop: tuple[str, ...] = (), ignore: tuple[str, ...] = ()
) -> dict[str, object]:
    """A reference's ``**options`` checked against the keyword-only arguments of
    ``hebbkern.<op_name>`` less ``drop``: an unknown or missing name raises the ``TypeError`` a
    call with the op's signature would; an omitted one takes the op's default. The names in
    ``ignore`` (``backend``) are accepted and left out of the result."""
    keywords = _keywords(op_name, drop)
    for name in options:
        if name not in keywords:
            raise TypeError(f"{op_name}() got an unexpected keyword argument {name!r}")
    missing = [repr(n) for n, d in keywords.items() if d is _REQUIRED and n not in options]
    if missing:
        s = "s" if len(missing) > 1 else ""
        names = " and ".join(missing) if len(missing) < 3 else ", ".join(missing)
        raise TypeError(
            f"{op_name}() missing {len(missing)} required keyword-only argument{s}: {names}"
        )
    merged = {**keywords, **options}
    return {k: v for k, v in merged.items() if k not in ignore}
