"""What a compat module's probe is made of: a known release series, names that exist, and
upstream functions whose source is the one this package was checked against."""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.metadata
import inspect


def release(package: str, series: tuple[str, ...]) -> str | None:
    """None if the installed `package` is of one of the release `series` ("4.2", "26.10")."""
    try:
        version = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return f"{package} is not installed"
    if any(version == s or version.startswith(s + ".") for s in series):
        return None
    return f"{package} {version} is not a release it was checked against ({', '.join(s + '.x' for s in series)})"


def resolve(path: str):
    """The object at a dotted path: a module, then attributes ("daphne.server.Server.handle_reply")."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            target = getattr(target, name)
        return target
    raise ImportError(f"cannot import {path}")


def missing(owner, names: tuple[str, ...]) -> str | None:
    """None if `owner` (an object or a dotted path) has every attribute in `names`."""
    if isinstance(owner, str):
        try:
            owner = resolve(owner)
        except (ImportError, AttributeError) as exc:
            return f"cannot find {owner}: {exc}"
    absent = [name for name in names if not hasattr(owner, name)]
    if absent:
        label = getattr(owner, "__qualname__", None) or getattr(owner, "__name__", repr(owner))
        return f"{getattr(owner, '__module__', '')}.{label} lacks {', '.join(absent)}"
    return None


def assigned_in(owner: str, names: tuple[str, ...]) -> str | None:
    """None if the module that defines class `owner` sets or reads every `self.<name>` in
    `names`: the instance attributes a probe cannot see on the class itself."""
    try:
        source = source_of(resolve(owner).__module__)
    except (ImportError, AttributeError, OSError, TypeError) as exc:
        return f"cannot read the source of {owner}: {exc}"
    absent = [name for name in names if f"self.{name}" not in source]
    return f"{owner} no longer uses {', '.join(absent)}" if absent else None


@functools.cache
def source_of(path: str) -> str:
    return inspect.getsource(resolve(path))


def fingerprint(path: str) -> str:
    """The first 16 hex digits of the SHA-256 of an upstream function's (or class's) source."""
    return hashlib.sha256(source_of(path).encode()).hexdigest()[:16]


def unchanged(sources: dict[str, str]) -> str | None:
    """None if every upstream function in `sources` (dotted path -> fingerprint) is the one
    checked; else which one differs. Used for functions copied here and for those whose
    internal state a fast path reads or writes."""
    for path, expected in sources.items():
        try:
            actual = fingerprint(path)
        except (ImportError, AttributeError, OSError, TypeError) as exc:
            return f"cannot read {path}: {exc}"
        if actual != expected:
            return f"{path} differs from the source it was checked against ({actual} != {expected})"
    return None


def first(*reasons: str | None) -> str | None:
    """The first of several checks that failed (None if none did)."""
    return next((reason for reason in reasons if reason is not None), None)
