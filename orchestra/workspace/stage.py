"""One stage's view of its session's worktrees: what ``StageRun.workspace`` is."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestra.workspace.session import SessionWorkspaces

__all__ = ["StageWorktrees"]


class StageWorktrees:
    """One stage's view of the session's worktrees (``StageWorkspace``)."""

    def __init__(self, session: SessionWorkspaces, node_id: str, branch: str | None) -> None:
        self.session = session
        self.node_id = node_id
        self.branch = branch

    @property
    def root(self) -> Path:
        return self.session.root(self.branch)

    @property
    def worktrees(self) -> dict[str, Path]:
        return {name: self.session.path_of(name, self.branch) for name in self.session.repos}

    @property
    def tools(self) -> dict[str, dict[str, str]]:
        return self.session.tools

    def locate(self, given: Path) -> Path | None:
        for name, repo in self.session.repos.items():
            base = repo.path.resolve()
            if given == base or base in given.parents:
                return self.session.path_of(name, self.branch) / given.relative_to(base)
        if len(self.session.repos) > 1 and given.name in self.session.repos:
            return self.session.path_of(given.name, self.branch)
        return None

    async def commit(
        self,
        paths: Sequence[str] | None,
        *,
        model: str = "",
        turn: str = "",
        untracked: bool = False,
        summary: str = "",
    ) -> None:
        await self.session.commit(
            self.node_id,
            self.branch,
            paths,
            model=model,
            turn=turn,
            untracked=untracked,
            summary=summary,
        )
