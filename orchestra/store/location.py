"""Which store a command uses, and opening it.

The store is named by a path (the embedded SQLite store) or a ``cxdb://`` URL. Without one
given explicitly (``--store``, or ``store=`` in the library), the first of these decides:
the ``CXDB_URL`` environment variable, ``cxdb.url`` in the nearest ``orchestra.yaml`` (the
working directory or a parent), then ``.orchestra/state.db`` in the working directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from orchestra.errors import ConfigError, StoreError
from orchestra.store.base import Store

__all__ = ["DEFAULT_STATE_PATH", "describe_store", "is_cxdb", "open_store", "resolve_store"]

DEFAULT_STATE_PATH = Path(".orchestra") / "state.db"


def resolve_store(spec: str | os.PathLike[str] | None = None, cwd: Path | None = None) -> str:
    """The store to use, as a path or URL string, with where the choice came from applied
    in order: ``spec``, ``CXDB_URL``, ``orchestra.yaml``'s ``cxdb.url``, the default path."""
    if spec is not None and str(spec):
        return str(spec)
    from_env = os.environ.get("CXDB_URL", "").strip()
    if from_env:
        return from_env
    from_config = _configured_url(cwd or Path.cwd())
    if from_config:
        return from_config
    return str(DEFAULT_STATE_PATH)


def describe_store(spec: str | os.PathLike[str] | None = None, cwd: Path | None = None) -> str:
    """Where ``resolve_store`` took its answer from, for ``orchestra doctor``."""
    if spec is not None and str(spec):
        return "--store"
    if os.environ.get("CXDB_URL", "").strip():
        return "the CXDB_URL environment variable"
    config = _find_config(cwd or Path.cwd())
    if config is not None and _configured_url(cwd or Path.cwd()):
        return f"cxdb.url in {config}"
    return "the default"


def is_cxdb(spec: str) -> bool:
    return spec.startswith("cxdb://")


async def open_store(spec: str | os.PathLike[str] | None = None) -> Store:
    """Open the store ``resolve_store(spec)`` names."""
    target = resolve_store(spec)
    if is_cxdb(target):
        from orchestra.store.cxdb.store import CxdbStore

        return await CxdbStore.open(target)
    if "://" in target:
        raise StoreError(
            f"'{target}': unknown store URL scheme; use a path for the embedded store or "
            "cxdb://HOST:PORT?http=HOST:PORT for a CXDB server"
        )
    from orchestra.store.embedded import EmbeddedStore

    return await EmbeddedStore.open(target)


def _find_config(start: Path) -> Path | None:
    for directory in (start, *start.parents):
        candidate = directory / "orchestra.yaml"
        if candidate.is_file():
            return candidate
    return None


def _configured_url(start: Path) -> str:
    config = _find_config(start)
    if config is None:
        return ""
    from orchestra.config.load import read_yaml  # only when there is a file to read

    try:
        data: Any = read_yaml(config)
    except ConfigError as err:
        raise StoreError(f"{err}; `orchestra doctor` checks it") from None
    if not isinstance(data, dict):
        return ""
    cxdb = data.get("cxdb")
    if cxdb is None:
        return ""
    if not isinstance(cxdb, dict) or not isinstance(cxdb.get("url", ""), str):
        raise StoreError(f"{config}: cxdb: expected a map with url: cxdb://HOST:PORT")
    return str(cxdb.get("url") or "").strip()
