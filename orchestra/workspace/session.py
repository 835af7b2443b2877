"""A session's git workspaces: its branch and worktree per repository, a worktree per
parallel branch, per-turn commits, merges at the fan-in, and the heads the store records.

Layout, under the worktrees directory (``.orchestra/worktrees`` beside the store)::

    SESSION/session/REPO             the session branch  {prefix}{graph}/{session}
    SESSION/branches/BRANCH/REPO     a parallel branch   {prefix}{graph}/{session}-{branch}

A stage works in one ``root``: the repository's worktree when there is one repository, or
the directory holding all of them (``app/``, ``lib/``) when there are several.

Worktree heads are keyed ``REPO`` (the session's line) and ``REPO@BRANCH``; every change is
handed to the engine through ``take_changes`` to be recorded with the next turn, so resume,
``resume --turn`` and ``replay`` put each worktree back where its recorded turn left it.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import anyio
import attrs
from dulwich.file import FileLocked
from dulwich.repo import Repo

from orchestra.config.model import RepoConfig
from orchestra.errors import RepositoryError
from orchestra.events import (
    AgentCommitCreated,
    Event,
    MergeConflict,
    PushFailed,
    SessionBranchCreated,
    SessionBranchPushed,
    WorktreeCreated,
    WorktreeMerged,
)
from orchestra.workspace import git
from orchestra.workspace.merge import merge_into
from orchestra.workspace.messages import CommitMessages, trailers
from orchestra.workspace.names import branch_name, safe_name, worktree_key
from orchestra.workspace.remote import clone, push
from orchestra.workspace.stage import StageWorktrees

__all__ = ["SessionWorkspaces"]

Emit = Callable[[Event], Awaitable[None]]
T = TypeVar("T")


@attrs.define
class _Worktree:
    repo: str
    branch: str | None
    path: Path
    ref: bytes
    handle: Repo
    lock: anyio.Lock = attrs.Factory(anyio.Lock)


class SessionWorkspaces:
    """The worktrees of one session (``Workspaces`` in ``orchestra.handlers.base``)."""

    def __init__(
        self,
        repos: Mapping[str, RepoConfig],
        *,
        pipeline: str,
        directory: Path,
        emit: Emit,
        messages: CommitMessages | None = None,
        tools: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.repos = dict(repos)
        self.pipeline = pipeline
        self.base_directory = directory.absolute()
        self.emit = emit
        self.messages = messages or CommitMessages()
        #: ``workspace.tools``: per repository, tool name -> shell command
        self.tools = {name: dict(commands) for name, commands in (tools or {}).items()}
        self.session_id = ""
        #: events of checking out, held until ``announce`` (the run's start comes first)
        self._held: list[Event] | None = []
        self._handles: dict[str, Repo] = {}
        #: one git operation at a time per repository: parallel branches writing the same
        #: object at once would trip over each other's lock files
        self._git_locks: dict[str, anyio.Lock] = {name: anyio.Lock() for name in self.repos}
        self._trees: dict[str, _Worktree] = {}
        self._changes: dict[str, str] = {}
        self._pushed: dict[str, str] = {}
        #: what the run header says about each repository (its HEAD, uncommitted changes)
        self.notes: dict[str, str] = {}

    @property
    def directory(self) -> Path:
        """This session's worktrees: ``WORKTREES/SESSION``."""
        return self.base_directory / self.session_id

    # opening -----------------------------------------------------------------------------

    async def prepare(self) -> None:
        """Open every repository (cloning a missing one from its remote) and check that a
        session can start from it; raises ``RepositoryError`` naming the one that cannot."""
        for name, repo in self.repos.items():
            await anyio.to_thread.run_sync(self._open_repo, name, repo)

    async def start(
        self, session_id: str, heads: Mapping[str, str], *, fresh: bool = False
    ) -> None:
        """Check out the session's worktrees: a new session's branches from each
        repository's HEAD; a resumed or forked session's at the ``heads`` it recorded. A
        ``fresh`` session refuses a branch that already exists rather than build on it."""
        self.session_id = session_id
        if fresh:
            for name, repo in self.repos.items():
                taken = branch_name(repo, self.pipeline, session_id, None)
                if git.branch_exists(self._handles[name], b"refs/heads/" + taken.encode()):
                    raise RepositoryError(
                        name,
                        f"branch {taken} already exists in {repo.path}, from a session whose "
                        f"state is gone (was .orchestra/ removed?); a new session will not "
                        f"build on it. Delete it (`git -C '{repo.path}' branch -D {taken}`) "
                        "or change branch_prefix",
                    )
        for name in self.repos:
            start = heads.get(name)
            await self._checkout(name, None, start.encode() if start else None)
        for key, sha in heads.items():
            name, _, branch = key.partition("@")
            if branch and name in self.repos:
                await self._checkout(name, branch, sha.encode(), reset=True)

    def _open_repo(self, name: str, repo: RepoConfig) -> None:
        if not repo.path.exists() and repo.remote:
            clone(name, repo.remote, repo.path, repo.clone_depth)
        handle = git.open_repository(name, repo.path)
        self._handles[name] = handle
        git.start_commit(name, handle)
        git.exclude(handle, self.base_directory)
        note = f"from {git.describe_head(handle)}"
        if git.has_local_changes(handle):
            note += "; its uncommitted changes are not in the session's worktree"
        self.notes[name] = note

    async def _checkout(
        self, name: str, branch: str | None, at: bytes | None, *, reset: bool = False
    ) -> _Worktree:
        """The worktree of ``name`` for ``branch``: its branch created at ``at`` (default:
        the repository's HEAD) unless it exists; put back at ``at`` when given."""
        repo = self.repos[name]
        handle = self._handles[name]
        ref = b"refs/heads/" + branch_name(repo, self.pipeline, self.session_id, branch).encode()
        path = self.path_of(name, branch)
        identifier = safe_name(f"orchestra-{self.session_id}-{branch or 'session'}-{name}")

        def checkout() -> tuple[_Worktree, bool, bool]:
            start = at or git.start_commit(name, handle)
            created = git.ensure_branch(handle, ref, start)
            existed = path.is_dir()
            handle_of_tree = git.add_worktree(handle, path, ref, identifier)
            tree = _Worktree(name, branch, path, ref, handle_of_tree)
            if at is not None and (reset or existed or not created):
                git.clear_stale_locks(tree.handle, ref)
                git.reset_hard(tree.handle, at)
            return tree, created, existed

        tree, created, existed = await self._git(name, checkout)
        key = worktree_key(name, branch)
        self._trees[key] = tree
        sha = git.head_sha(handle, ref).decode()
        self._changes[key] = sha
        ref_name = ref.decode().removeprefix("refs/heads/")
        if created and branch is None:
            await self._emit(
                SessionBranchCreated(
                    session_id=self.session_id,
                    repo=name,
                    branch=ref_name,
                    sha=sha,
                    note=self.notes.get(name, "") if at is None else "",
                )
            )
        if not existed:
            await self._emit(
                WorktreeCreated(
                    session_id=self.session_id,
                    repo=name,
                    branch=ref_name,
                    path=str(path),
                    parallel_branch=branch,
                )
            )
        return tree

    async def _git(self, repo: str, operation: Callable[[], T]) -> T:
        """Run a git operation on ``repo`` in a worker thread, one at a time per repository.
        On a lock file held by another process (the user's own git, say) it waits and tries
        again, for up to 5 s; a lock file left by a killed process (older than a minute:
        git holds one for milliseconds) is removed first."""
        async with self._git_locks[repo]:
            for _ in range(25):
                try:
                    return await anyio.to_thread.run_sync(operation)
                except FileLocked as err:
                    locked = err
                    if not git.remove_stale_lock(os.fsdecode(err.lockfilename)):
                        await anyio.sleep(0.2)
            raise RepositoryError(
                repo, f"{os.fsdecode(locked.filename)} stayed locked by another process for 5 s"
            )

    async def announce(self) -> None:
        held, self._held = self._held or [], None
        for event in held:
            await self.emit(event)

    async def _emit(self, event: Event) -> None:
        if self._held is not None:
            self._held.append(event)
        else:
            await self.emit(event)

    def path_of(self, name: str, branch: str | None) -> Path:
        """Where the worktree of repository ``name`` for ``branch`` is (or would be)."""
        if branch is None:
            return self.directory / "session" / name
        return self.directory / "branches" / safe_name(branch) / name

    # what stages see ------------------------------------------------------------------------

    def root(self, branch: str | None) -> Path:
        base = self.path_of(next(iter(self.repos)), branch)
        return base if len(self.repos) == 1 else base.parent

    def describe(self) -> dict[str, dict[str, str]]:
        """Per repository: its path, the session branch and that branch's head."""
        described = {}
        for name, repo in self.repos.items():
            branch = branch_name(repo, self.pipeline, self.session_id, None)
            ref = b"refs/heads/" + branch.encode()
            handle = self._handles[name]
            head = git.head_sha(handle, ref).decode() if git.branch_exists(handle, ref) else ""
            described[name] = {"path": str(repo.path), "branch": branch, "head": head}
        return described

    def for_stage(self, node_id: str, branch: str | None) -> StageWorktrees:
        return StageWorktrees(self, node_id, branch)

    def heads_of(self, branch: str | None) -> dict[str, str]:
        return {
            key: git.head_sha(tree.handle, tree.ref).decode()
            for key, tree in self._trees.items()
            if tree.branch == branch
        }

    def take_changes(self) -> dict[str, str]:
        """Heads that moved since the last call ('' for a worktree removed)."""
        changes, self._changes = self._changes, {}
        return changes

    # commits ------------------------------------------------------------------------------

    async def commit(
        self,
        node_id: str,
        branch: str | None,
        paths: Sequence[str] | None,
        *,
        model: str,
        turn: str,
        untracked: bool,
        summary: str = "",
    ) -> None:
        """Commit what a turn or stage changed in ``branch``'s worktrees: ``paths``
        (relative to the stage root) or, with None, every changed tracked file."""
        for name in self.repos:
            tree = self._trees.get(worktree_key(name, branch))
            if tree is None:
                continue
            mine = None if paths is None else self._paths_in(name, paths)
            if mine is not None and not mine and not untracked:
                continue
            await self._commit_one(
                tree, node_id, mine, model=model, turn=turn, untracked=untracked, summary=summary
            )

    def _paths_in(self, name: str, paths: Sequence[str]) -> list[str]:
        if len(self.repos) == 1:
            return list(paths)
        prefix = f"{name}/"
        return [p.removeprefix(prefix) for p in paths if p.startswith(prefix)]

    async def _commit_one(
        self,
        tree: _Worktree,
        node_id: str,
        paths: list[str] | None,
        *,
        model: str,
        turn: str,
        untracked: bool,
        summary: str,
    ) -> None:
        async with tree.lock:
            wants_diff = self.messages.summarise is not None and not summary
            change = await self._git(
                tree.repo,
                lambda: git.prepare_commit(tree.handle, paths, untracked, diff=wants_diff),
            )
            if change is None:
                return
            if summary:
                body = ""
            else:
                summary, body = await self.messages.write(node_id, change)
            message = f"{summary}\n\n{body + chr(10) + chr(10) if body else ''}" + trailers(
                session=self.session_id,
                node=node_id,
                turn=turn,
                model=model,
                pipeline=self.pipeline,
            )
            who = f"{node_id} ({model})" if model else node_id
            author = f"{who} <{git.AUTHOR_EMAIL}>"
            sha = await self._git(
                tree.repo,
                lambda: git.finish_commit(tree.handle, change.tree, message=message, author=author),
            )
        key = worktree_key(tree.repo, tree.branch)
        self._changes[key] = sha.decode()
        await self._emit(
            AgentCommitCreated(
                session_id=self.session_id,
                node_id=node_id,
                repo=tree.repo,
                sha=sha.decode(),
                files=tuple(change.files),
                summary=summary,
                branch=tree.branch,
            )
        )

    # parallel branches ----------------------------------------------------------------------

    async def fork(
        self, node_id: str, parent: str | None, branches: Sequence[str], keep: Sequence[str]
    ) -> None:
        for name in self.repos:
            source = self._trees[worktree_key(name, parent)]
            start = git.head_sha(source.handle, source.ref)
            for branch in branches:
                if branch in keep and worktree_key(name, branch) in self._trees:
                    continue
                await self._checkout(name, branch, start, reset=True)

    async def merge(
        self, node_id: str, into: str | None, branches: Sequence[str]
    ) -> dict[str, dict[str, str]]:
        conflicts: dict[str, dict[str, str]] = {}
        for name in self.repos:
            target = self._trees[worktree_key(name, into)]
            for branch in branches:
                source = self._trees.get(worktree_key(name, branch))
                if source is None:
                    continue
                found = await self._merge_one(node_id, target, source)
                if found:
                    conflicts.setdefault(name, {}).update(found)
        return conflicts

    async def _merge_one(
        self, node_id: str, target: _Worktree, source: _Worktree
    ) -> dict[str, str]:
        source_ref = source.ref.decode().removeprefix("refs/heads/")
        message = f"Merge {source_ref} at {node_id}\n\n" + trailers(
            session=self.session_id, node=node_id, turn="merge", model="", pipeline=self.pipeline
        )
        async with target.lock:
            theirs = git.head_sha(source.handle, source.ref)
            result = await self._git(
                target.repo,
                lambda: merge_into(
                    target.handle,
                    theirs,
                    message=message,
                    author=f"Orchestra <{git.AUTHOR_EMAIL}>",
                ),
            )
        if result.sha is None:
            await self._emit(
                MergeConflict(
                    session_id=self.session_id,
                    node_id=node_id,
                    repo=target.repo,
                    branch=source_ref,
                    files=tuple(sorted(result.conflicts)),
                )
            )
            return result.conflicts
        await self._drop(source)
        if not result.merged:
            return {}
        self._changes[worktree_key(target.repo, target.branch)] = result.sha.decode()
        await self._emit(
            WorktreeMerged(
                session_id=self.session_id,
                node_id=node_id,
                repo=target.repo,
                branch=source_ref,
                sha=result.sha.decode(),
                fast_forward=result.fast_forward,
            )
        )
        return {}

    async def _drop(self, tree: _Worktree) -> None:
        """Remove a merged branch's worktree and its branch (its commits are merged)."""
        handle = self._handles[tree.repo]

        def drop() -> None:
            git.remove_worktree(handle, tree.path)
            git.delete_branch(handle, tree.ref)

        await self._git(tree.repo, drop)
        key = worktree_key(tree.repo, tree.branch)
        self._trees.pop(key, None)
        self._changes[key] = ""  # gone: a resume must not bring it back

    # pushing and closing --------------------------------------------------------------------

    async def checkpointed(self) -> None:
        await self._push("on_checkpoint")

    async def _push(self, when: str) -> None:
        for name, repo in self.repos.items():
            if repo.push != when:
                continue
            tree = self._trees.get(name)
            if tree is None:
                continue
            sha = git.head_sha(tree.handle, tree.ref).decode()
            if self._pushed.get(name) == sha:
                continue
            remote = repo.remote or "origin"
            ref_name = tree.ref.decode().removeprefix("refs/heads/")
            try:
                await anyio.to_thread.run_sync(push, self._handles[name], remote, tree.ref)
            except RepositoryError as err:
                await self._emit(
                    PushFailed(
                        session_id=self.session_id,
                        repo=name,
                        branch=ref_name,
                        remote=remote,
                        error=err.problem,
                    )
                )
                continue
            self._pushed[name] = sha
            await self._emit(
                SessionBranchPushed(
                    session_id=self.session_id, repo=name, branch=ref_name, remote=remote, sha=sha
                )
            )

    async def close(self, status: str) -> None:
        """At the end of a run: push on completion when it succeeded, and once it has ended
        (success or fail, not an interruption) remove every worktree; the branches stay."""
        if status == "success":
            await self._push("on_completion")
        if status not in ("success", "fail"):
            return
        trees = list(self._trees.values())

        def remove() -> None:
            for tree in trees:
                git.remove_worktree(self._handles[tree.repo], tree.path)
            for directory in sorted(self.directory.rglob("*"), reverse=True):
                if directory.is_dir() and not any(directory.iterdir()):
                    directory.rmdir()
            if self.directory.is_dir() and not any(self.directory.iterdir()):
                self.directory.rmdir()

        await anyio.to_thread.run_sync(remove)
        self._trees.clear()
