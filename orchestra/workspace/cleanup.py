"""``orchestra cleanup``: remove what finished sessions left in the workspace repositories.

Worktrees (under ``.orchestra/worktrees/SESSION``) of sessions that are not running are
removed: they hold nothing a resume needs, since a resume checks them out again at the heads
its session recorded. Session branches (``{prefix}{graph}/{session}`` and their parallel
branches ``…-{branch}``) are removed once older than the limit, when their session has
finished (success or fail) or its state is gone from the store; a running session's never,
an interrupted or crashed one's (resumable) only with ``include_crashed``. Remotes are never
touched.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import anyio
import attrs
from dulwich.objects import Commit
from dulwich.refs import Ref
from dulwich.repo import Repo

from orchestra.config.model import Config, RepoConfig
from orchestra.engine.session import SessionState, load_session
from orchestra.errors import ContextNotFound, RepositoryError
from orchestra.events import CleanupCompleted
from orchestra.store.base import Store
from orchestra.workspace import git
from orchestra.workspace.names import safe_name

__all__ = ["CleanupReport", "Kept", "cleanup", "report_event", "worktrees_directory"]


def worktrees_directory(store_location: str, config: Config) -> Path:
    """``worktrees/`` beside the embedded store's database; for a CXDB store,
    ``.orchestra/worktrees`` beside ``orchestra.yaml`` (or in the working directory)."""
    if store_location and "://" not in store_location:
        return Path(store_location).absolute().parent / "worktrees"
    base = config.path.parent if config.path is not None else Path.cwd()
    return base / ".orchestra" / "worktrees"


@attrs.frozen
class Kept:
    """Something cleanup left, and why."""

    what: str
    reason: str


@attrs.frozen
class CleanupReport:
    removed_worktrees: tuple[str, ...] = ()
    removed_branches: tuple[str, ...] = ()
    kept: tuple[Kept, ...] = ()
    dry_run: bool = False


async def cleanup(
    store: Store,
    config: Config,
    *,
    older_than: float,
    worktrees: Path | None = None,
    dry_run: bool = False,
    include_crashed: bool = False,
    now: float | None = None,
) -> CleanupReport:
    """Remove the stale worktrees (under ``worktrees``, default the directory beside
    ``store``) and session branches of ``config``'s repositories (see the module's
    docstring); with ``dry_run`` only report what would go."""
    sessions = _Sessions(store)
    removed_worktrees: list[str] = []
    removed_branches: list[str] = []
    kept: list[Kept] = []
    directory = worktrees or worktrees_directory(store.location, config)
    if directory.is_dir():
        for session_dir in sorted(directory.iterdir(), key=lambda p: p.name):
            state = await sessions.get(session_dir.name)
            if state is not None and state.status == "running":
                kept.append(Kept(str(session_dir), f"session {state.session_id} is running"))
                continue
            if state is None:  # another store's session, perhaps a running one: not ours
                kept.append(
                    Kept(
                        str(session_dir),
                        f"session {session_dir.name} is not in {store.location}; remove the "
                        "directory by hand if its session is gone",
                    )
                )
                continue
            removed_worktrees.extend(await _remove_worktrees(session_dir, dry_run))
    cutoff = (now if now is not None else time.time()) - older_than
    for name, repo in config.workspace.repos.items():
        if not (repo.path.exists()):
            continue
        try:
            handle = git.open_repository(name, repo.path)
        except RepositoryError as err:
            kept.append(Kept(str(repo.path), err.problem))
            continue
        with handle:
            if not dry_run:
                git.prune_worktrees(handle)
            checked_out = git.checked_out_branches(handle)
            for ref, graph, session_id in _session_branches(handle, repo):
                where = checked_out.get(ref)
                if where is not None and not (dry_run and _goes(where, removed_worktrees)):
                    shown = f"{name}: {ref.decode().removeprefix('refs/heads/')}"
                    kept.append(Kept(shown, f"checked out in {where}"))
                    continue
                state = await sessions.get(session_id)
                if state is not None and safe_name(state.pipeline) != graph:
                    state = None  # the store's session of that id is another pipeline's
                shown = f"{name}: {ref.decode().removeprefix('refs/heads/')}"
                reason = _why_keep(state, handle, ref, cutoff, include_crashed)
                if reason:
                    kept.append(Kept(shown, reason))
                    continue
                if not dry_run:
                    git.delete_branch(handle, ref)
                removed_branches.append(shown)
    return CleanupReport(tuple(removed_worktrees), tuple(removed_branches), tuple(kept), dry_run)


def _goes(path: str, removed: list[str]) -> bool:
    """Whether a worktree at ``path`` is among those a dry run would remove."""
    return any(Path(path).resolve() == Path(gone).resolve() for gone in removed)


def _why_keep(
    state: SessionState | None, repo: Repo, ref: bytes, cutoff: float, include_crashed: bool
) -> str:
    """Why a session branch stays ('' when it goes)."""
    if state is not None and state.status == "running":
        return f"session {state.session_id} is running"
    if state is not None and state.status not in ("success", "fail") and not include_crashed:
        return (
            f"session {state.session_id} is {state.status} and can be resumed "
            "(--include-crashed removes it)"
        )
    if state is not None and state.updated_ms:
        last = state.updated_ms / 1000
    else:
        commit = repo[git.head_sha(repo, ref)]
        last = commit.commit_time if isinstance(commit, Commit) else time.time()
    if last > cutoff:
        return f"newer than the limit (last change {time.ctime(last)})"
    return ""


def _session_branches(repo: Repo, config: RepoConfig) -> list[tuple[bytes, str, str]]:
    """Session branches under the repository's prefix, with their graph and session ids."""
    pattern = re.compile(
        re.escape(config.branch_prefix.encode()) + rb"(?P<graph>[^/]+)/(?P<session>\d+)(-.+)?"
    )
    found = []
    for name in sorted(repo.refs.keys(base=Ref(b"refs/heads/"))):
        match = pattern.fullmatch(bytes(name))
        if match is not None:
            found.append(
                (
                    b"refs/heads/" + bytes(name),
                    match.group("graph").decode(),
                    match.group("session").decode(),
                )
            )
    return found


async def _remove_worktrees(session_dir: Path, dry_run: bool) -> list[str]:
    """Every worktree under a session's directory, then the directory."""
    worktrees = sorted(gitfile.parent for gitfile in session_dir.rglob(".git"))
    if not dry_run:

        def remove() -> None:
            for worktree in worktrees:
                git.remove_worktree_dir(worktree)
            shutil.rmtree(session_dir, ignore_errors=True)

        await anyio.to_thread.run_sync(remove)
    return [str(w) for w in worktrees] or ([str(session_dir)] if not dry_run else [])


class _Sessions:
    """Sessions of the store by id, loaded once; None for an id the store does not have."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._known: dict[str, SessionState | None] = {}

    async def get(self, session_id: str) -> SessionState | None:
        if not session_id.isdigit():
            return None
        if session_id not in self._known:
            try:
                self._known[session_id] = await load_session(self.store, session_id)
            except ContextNotFound:
                self._known[session_id] = None
        return self._known[session_id]


def report_event(report: CleanupReport) -> CleanupCompleted:
    """The report as the ``CleanupCompleted`` event ``--json`` prints."""
    return CleanupCompleted(
        session_id="",
        removed_worktrees=report.removed_worktrees,
        removed_branches=report.removed_branches,
        kept=tuple(f"{k.what}: {k.reason}" for k in report.kept),
        dry_run=report.dry_run,
    )
