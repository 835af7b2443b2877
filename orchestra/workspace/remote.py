"""Pushing a session branch, and cloning a repository that is not there yet."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

from dulwich.repo import Repo

from orchestra.errors import RepositoryError

__all__ = ["clone", "push"]


def push(repo: Repo, remote: str, ref: bytes) -> None:
    """Push ``ref`` to ``remote`` (a remote's name or a URL) under the same name."""
    from dulwich import porcelain

    errors = io.BytesIO()
    try:
        result = porcelain.push(
            repo, remote, [ref + b":" + ref], outstream=io.BytesIO(), errstream=errors
        )
    except Exception as err:  # dulwich raises many types: every one is a failed push
        detail = errors.getvalue().decode("utf-8", errors="replace").strip()
        raise RepositoryError(
            Path(repo.path).name, f"push to {remote} failed: {err}{'; ' + detail if detail else ''}"
        ) from None
    refused = {k: v for k, v in (result.ref_status or {}).items() if v is not None}
    if refused:
        raise RepositoryError(Path(repo.path).name, f"push to {remote} refused: {refused}")


def clone(name: str, source: str, path: Path, depth: int | None) -> None:
    """Clone ``source`` into ``path`` (a missing ``workspace.repos`` path)."""
    from dulwich import porcelain

    path.parent.mkdir(parents=True, exist_ok=True)
    errors = io.BytesIO()
    try:
        porcelain.clone(source, str(path), depth=depth, errstream=errors)
    except Exception as err:  # as for push: any failure of the clone
        shutil.rmtree(path, ignore_errors=True)
        raise RepositoryError(name, f"cloning {source} into {path} failed: {err}") from None


# helpers --------------------------------------------------------------------------------
