"""The references' keyword arguments are the public op's: its signature is the one place they are
written (names, defaults), so an oracle cannot drift from the op it checks."""

from __future__ import annotations

import inspect

_REQUIRED = inspect.Parameter.empty

# op name -> its keyword-only arguments and their defaults, filled by publish() when hebbkern.ops
# is imported: a plain table, which torch.compile(reference) reads without tracing inspect.
KEYWORDS: dict[str, dict[str, object]] = {}


def publish(*ops) -> None:
    """Records the keyword-only arguments of the public ``ops`` (hebbkern/ops/__init__.py)."""
    for op in ops:
        params = inspect.signature(op).parameters.values()
        KEYWORDS[op.__name__] = {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY}


def op_keywords(
    op_name: str, options: dict, *, drop: tuple[str, ...] = (), ignore: tuple[str, ...] = ()
) -> dict[str, object]:
    """A reference's ``**options`` checked against the keyword-only arguments of
    ``hebbkern.<op_name>`` less ``drop``: an unknown or missing name raises the ``TypeError`` a
    call with the op's signature would; an omitted one takes the op's default. The names in
    ``ignore`` (``backend``) are accepted and left out of the result."""
    keywords = KEYWORDS[op_name]
    for name in options:
        if name not in keywords or name in drop:
            raise TypeError(f"{op_name}() got an unexpected keyword argument {name!r}")
    missing = [repr(n) for n, d in keywords.items() if d is _REQUIRED and n not in options]
    if missing:
        s = "s" if len(missing) > 1 else ""
        head, last = missing[:-1], missing[-1]  # Python's wording: 'a' and 'b'; 'a', 'b', and 'c'
        names = f"{', '.join(head)}{',' if len(head) > 1 else ''} and {last}" if head else last
        raise TypeError(
            f"{op_name}() missing {len(missing)} required keyword-only argument{s}: {names}"
        )
    merged = {**keywords, **options}
    return {k: v for k, v in merged.items() if k not in drop and k not in ignore}
