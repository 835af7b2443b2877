"""Where an LLM stage works: the directory its agent's tools (or a CLI agent) run in."""

from __future__ import annotations

from pathlib import Path

from orchestra.engine.context import Context
from orchestra.graph import Node
from orchestra.handlers.base import StageRun, TerminalError
from orchestra.templates import TemplateError, render_prompt

__all__ = ["node_workspace", "relative_to"]


def node_workspace(
    node: Node, stage: StageRun, default: Path | None, context: Context | None = None
) -> Path:
    """Where a node's agent works: its ``workspace=`` (a relative path is taken from the
    pipeline file's directory), else ``default``, else the working directory, except in a
    parallel branch: there, ``RUN_DIR/branches/BRANCH/workspace``, so that parallel agents
    never share a directory. In a git workspace the stage's worktree stands in: its root,
    a repository's worktree for ``workspace=`` naming the repository (or its path, or a
    path inside it).

    ``workspace=`` is a template like a prompt: run variables, context values, ``run_dir``
    and ``pipeline_dir`` (``workspace="{{ run_dir }}/head"``)."""
    given = _rendered(node, stage, context)
    worktrees = stage.workspace
    if not given:
        if worktrees is not None:
            return worktrees.root
        if default is None and stage.branch is not None:
            # Parallel agents with no git worktrees must not share one directory (lint rule
            # parallel_shared_workspace says so at compile time).
            own = stage.logs_root / "branches" / stage.branch / "workspace"
            own.mkdir(parents=True, exist_ok=True)
            return own.resolve()
        return (default or Path.cwd()).resolve()
    if worktrees is not None and given in worktrees.worktrees:
        return worktrees.worktrees[given]
    path = Path(given).expanduser()
    if not path.is_absolute() and stage.graph is not None and stage.graph.path:
        path = Path(stage.graph.path).parent / path
    path = path.resolve()
    if worktrees is not None:
        located = worktrees.locate(path)
        if located is not None:
            return located
    return path


def _rendered(node: Node, stage: StageRun, context: Context | None) -> str:
    given = str(node.attrs.get("workspace") or "").strip()
    if "{{" not in given and "{%" not in given:
        return given
    values = dict(context.as_mapping()) if context is not None else {}
    try:
        where = f"node '{node.id}' workspace"
        return render_prompt(given, stage.template_variables(node.id), values, where).strip()
    except TemplateError as err:
        raise TerminalError(str(err)) from None


def relative_to(path: Path, root: Path) -> str | None:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return None
