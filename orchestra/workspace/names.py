"""The names of a session's branches and worktree heads."""

from __future__ import annotations

import re

from orchestra.config.model import RepoConfig

__all__ = ["branch_name", "safe_name", "worktree_key"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str) -> str:
    """``text`` as a piece of a git branch name (a graph or branch id): no characters git
    refuses in a ref, no ``..``, not ending in ``.lock``."""
    name = _UNSAFE.sub("-", text).replace("..", "-").strip("-.") or "pipeline"
    return name + "-" if name.endswith(".lock") else name


def branch_name(repo: RepoConfig, pipeline: str, session_id: str, branch: str | None) -> str:
    """``orchestra/review/12``, or ``orchestra/review/12-security`` for a parallel branch
    (git cannot hold both ``…/12`` and ``…/12/security``: one ref cannot be a directory)."""
    name = f"{repo.branch_prefix}{safe_name(pipeline)}/{session_id}"
    return f"{name}-{safe_name(branch)}" if branch else name


def worktree_key(repo: str, branch: str | None) -> str:
    return f"{repo}@{branch}" if branch else repo
