"""Git through dulwich: what the workspace layer does to a repository, as plain functions.

The user's checkout is only ever read: a session's worktrees share the repository's objects
and refs (that is what a git worktree is), but the user's HEAD, index and files are never
written. Every function here is synchronous and may take a while on a large repository, so
callers run them in a worker thread. Failures are ``RepositoryError``s naming the repo.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import stat
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
from dulwich.errors import NotGitRepository
from dulwich.ignore import IgnoreFilterManager
from dulwich.index import Index, get_unstaged_changes
from dulwich.objects import Commit, ObjectID
from dulwich.refs import Ref
from dulwich.repo import Repo

if TYPE_CHECKING:
    from dulwich.diff_tree import TreeChange

from orchestra.errors import RepositoryError

__all__ = [
    "AUTHOR_EMAIL",
    "HEAD",
    "Change",
    "add_worktree",
    "branch_exists",
    "changed_paths",
    "checked_out_branches",
    "clear_stale_locks",
    "commit_paths",
    "delete_branch",
    "describe_head",
    "ensure_branch",
    "exclude",
    "finish_commit",
    "has_local_changes",
    "head_sha",
    "new_commit",
    "open_repository",
    "prepare_commit",
    "prune_worktrees",
    "remove_stale_lock",
    "remove_worktree",
    "remove_worktree_dir",
    "reset_hard",
    "start_commit",
    "tree_changes",
]

AUTHOR_EMAIL = "orchestra@localhost"
HEAD = Ref(b"HEAD")


def open_repository(name: str, path: Path) -> Repo:
    """The repository at ``path``; an error that says what to do when there is none."""
    if not path.exists():
        raise RepositoryError(name, f"{path} does not exist")
    try:
        return Repo(str(path))
    except NotGitRepository:
        raise RepositoryError(
            name,
            f"{path} is not a git repository; run `git init` there (and commit), or fix "
            f"workspace.repos.{name}.path",
        ) from None


def start_commit(name: str, repo: Repo) -> bytes:
    """The commit a session starts from: the repository's HEAD, attached or detached."""
    try:
        return repo.refs[HEAD]
    except KeyError:
        branch = _symbolic_head(repo) or b"HEAD"
        raise RepositoryError(
            name,
            f"{repo.path} has no commits yet (branch '{_short_ref(branch)}' is unborn), so "
            f"there is nothing to start a session branch from; make a first commit, e.g. "
            f"`git -C '{repo.path}' commit --allow-empty -m init`",
        ) from None


def describe_head(repo: Repo) -> str:
    """``branch main``, or ``detached HEAD at 1a2b3c4``."""
    branch = _symbolic_head(repo)
    if branch is not None:
        return f"branch {_short_ref(branch)}"
    return f"detached HEAD at {repo.refs[HEAD].decode()[:7]}"


def has_local_changes(repo: Repo) -> bool:
    """Whether the user's checkout has uncommitted changes to tracked files (read only: the
    user's index is not refreshed or written)."""
    if repo.bare:
        return False
    index = repo.open_index()
    if any(True for _ in get_unstaged_changes(index, repo.path)):
        return True
    head = repo[repo.refs[HEAD]]
    assert isinstance(head, Commit)
    return bool(index.commit(repo.object_store) != head.tree)


def exclude(repo: Repo, directory: Path) -> None:
    """Keep ``directory`` (Orchestra's worktrees) out of the user's ``git status`` when it
    lies inside their checkout, through ``.git/info/exclude``, which is not a tracked file."""
    if repo.bare:
        return
    root = Path(repo.path).resolve()
    target = directory.resolve()
    if root not in target.parents:
        return
    pattern = "/" + target.relative_to(root).as_posix() + "/"
    exclude_file = Path(repo.controldir()) / "info" / "exclude"
    existing = exclude_file.read_text(encoding="utf-8") if exclude_file.is_file() else ""
    if pattern in existing.splitlines():
        return
    exclude_file.parent.mkdir(parents=True, exist_ok=True)
    separator = "" if not existing or existing.endswith("\n") else "\n"
    exclude_file.write_text(f"{existing}{separator}{pattern}\n", encoding="utf-8")


def branch_exists(repo: Repo, ref: bytes) -> bool:
    return Ref(ref) in repo.refs


def ensure_branch(repo: Repo, ref: bytes, sha: bytes) -> bool:
    """Create ``ref`` at ``sha`` unless it exists; True when it was created."""
    return bool(repo.refs.add_if_new(Ref(ref), ObjectID(sha)))


def delete_branch(repo: Repo, ref: bytes) -> None:
    repo.refs.remove_if_equals(Ref(ref), None)


def head_sha(repo: Repo, ref: bytes) -> bytes:
    return bytes(repo.refs[Ref(ref)])


def add_worktree(repo: Repo, path: Path, ref: bytes, identifier: str) -> Repo:
    """A worktree at ``path`` with ``ref`` checked out; an existing one is reused as it is.

    ``identifier`` names the worktree's control directory in the repository
    (``.git/worktrees/IDENTIFIER``): it must be unique, which the directory's base name,
    dulwich's default, is not when every session has an ``app/`` worktree."""
    if (path / ".git").is_file():
        try:
            existing = Repo(str(path))
        except NotGitRepository:
            existing = None
        if existing is not None and _symbolic_head(existing) == ref:
            return existing
    if path.exists():
        shutil.rmtree(path)
    control = Path(repo.controldir()) / "worktrees" / identifier
    if control.exists():
        shutil.rmtree(control)
    path.mkdir(parents=True)
    worktree = Repo._init_new_working_directory(str(path), repo, identifier=identifier)
    worktree.refs.set_symbolic_ref(HEAD, Ref(ref))
    worktree.get_worktree().reset_index()
    return worktree


def remove_worktree(repo: Repo, path: Path) -> None:
    """Remove a worktree's directory and its control directory in ``repo``."""
    remove_worktree_dir(path, Path(repo.controldir()) / "worktrees")


def remove_worktree_dir(path: Path, controls: Path | None = None) -> None:
    """Remove a worktree's directory and the control directory its ``.git`` file names,
    when that lies in a repository's ``worktrees/`` (or in ``controls`` when given)."""
    gitfile = path / ".git"
    control: Path | None = None
    if gitfile.is_file():
        text = gitfile.read_text(encoding="utf-8", errors="replace").strip()
        if text.startswith("gitdir:"):
            control = Path(text.removeprefix("gitdir:").strip())
            if not control.is_absolute():
                control = (path / control).resolve()
    # Only a control directory that names this worktree back is removed: the .git file is
    # in the worktree, where an agent could have written anything.
    owned = control is not None and _names_back(control, gitfile)
    if path.exists():
        shutil.rmtree(path)
    if control is None or not owned:
        return
    if control.parent == controls or (controls is None and control.parent.name == "worktrees"):
        shutil.rmtree(control, ignore_errors=True)


def _names_back(control: Path, gitfile: Path) -> bool:
    """Whether ``control`` is a worktree control directory whose ``gitdir`` file points at
    ``gitfile``, as git's own are."""
    try:
        named = Path((control / "gitdir").read_text(encoding="utf-8").strip())
    except OSError:
        return False
    if not named.is_absolute():
        named = control / named
    return named.resolve() == gitfile.resolve()


def checked_out_branches(repo: Repo) -> dict[bytes, str]:
    """The branches checked out in one of the repository's linked worktrees, with where
    (git refuses to delete those, and so does ``orchestra cleanup``)."""
    from dulwich.worktree import list_worktrees

    found: dict[bytes, str] = {}
    for info in list_worktrees(repo)[1:]:  # the first is the repository's own checkout
        if info.branch is not None and os.path.isdir(info.path):
            found[bytes(info.branch)] = info.path
    return found


def prune_worktrees(repo: Repo) -> None:
    """Forget the worktrees of ``repo`` whose directory is gone (``git worktree prune``)."""
    from dulwich.worktree import prune_worktrees as prune

    prune(repo)


def changed_paths(worktree: Repo, *, untracked: bool = True) -> list[str]:
    """The paths a ``git add -A`` would stage (relative, ``/``-separated): tracked files
    changed or deleted and, with ``untracked``, new files ``.gitignore`` does not exclude."""
    from dulwich.porcelain import get_untracked_paths

    index = worktree.open_index()
    changed = {os.fsdecode(path) for path in get_unstaged_changes(index, worktree.path)}
    if untracked:
        found = get_untracked_paths(
            worktree.path, worktree.path, index, exclude_ignored=True, untracked_files="all"
        )
        changed.update(str(path).replace(os.sep, "/") for path in found)
    return sorted(changed)


@attrs.frozen
class Change:
    """A commit prepared but not yet made: its tree, the files it changes, and the diff
    (for a commit message)."""

    tree: bytes
    files: tuple[str, ...]
    diff: str


def prepare_commit(
    worktree: Repo, paths: Iterable[str] | None, untracked: bool = False, *, diff: bool = False
) -> Change | None:
    """Stage ``paths`` (relative to the worktree; a missing file is a deletion), or with
    None every changed tracked file; with ``untracked`` also every new file. Ignored paths
    are left out, as ``git add`` leaves them, and so is anything named ``.git`` (the
    worktree's link to its repository, which no tree may hold). None when that changes
    nothing. ``diff``
    asks for the change's diff too (for a commit message), which costs a read of every
    changed file's two versions."""
    wanted = set(paths or ())
    if paths is None or untracked:
        wanted.update(changed_paths(worktree, untracked=untracked))
    ignore = IgnoreFilterManager.from_repo(worktree)
    staged = sorted(
        p
        for p in wanted
        if p and ".git" not in p.split("/") and not _is_ignored(ignore, p)  # git forbids .git
    )
    if not staged:
        return None
    tree = _stage(worktree, staged)
    parent = worktree[worktree.refs[HEAD]]
    assert isinstance(parent, Commit)
    if tree == parent.tree:
        return None
    files = tuple(
        os.fsdecode((change.new and change.new.path) or (change.old and change.old.path) or b"")
        for change in tree_changes(worktree, parent.tree, tree)
    )
    text = ""
    if diff:
        from dulwich.patch import write_tree_diff

        written = io.BytesIO()
        write_tree_diff(written, worktree.object_store, parent.tree, ObjectID(tree))
        text = written.getvalue().decode("utf-8", errors="replace")
    return Change(tree, files, text)


def _stage(worktree: Repo, paths: Sequence[str]) -> bytes:
    """``git add`` of ``paths`` (as dulwich's ``WorkTree.stage``, reading the index once
    instead of twice) and the id of the index's tree."""
    from dulwich.index import blob_from_path_and_stat, index_entry_from_stat

    config = worktree.get_config_stack()
    index = worktree.open_index(config=config)
    normalizer = worktree.get_blob_normalizer(config=config)
    root = os.fsencode(worktree.path)
    for path in paths:
        encoded = os.fsencode(path)
        full = os.path.join(root, encoded)
        try:
            st = os.lstat(full)
        except (FileNotFoundError, NotADirectoryError):
            _unstage(index, encoded)
            continue
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
            _unstage(index, encoded)
            continue
        blob = normalizer.checkin_normalize(blob_from_path_and_stat(full, st), encoded)
        worktree.object_store.add_object(blob)
        index[encoded] = index_entry_from_stat(st, ObjectID(blob.id))
    index.write()
    return bytes(index.commit(worktree.object_store))


def _unstage(index: Index, path: bytes) -> None:
    with contextlib.suppress(KeyError):
        del index[path]


def finish_commit(worktree: Repo, tree: bytes, *, message: str, author: str) -> bytes:
    """Commit a prepared tree on the worktree's branch. The branch moves only if nobody
    moved it meanwhile."""
    return _commit(worktree, tree, message=message, author=author, extra_parents=())


def commit_paths(
    worktree: Repo, paths: Iterable[str], *, message: str, author: str
) -> bytes | None:
    """Commit exactly ``paths``; None when that changes nothing."""
    change = prepare_commit(worktree, list(paths))
    if change is None:
        return None
    return finish_commit(worktree, change.tree, message=message, author=author)


#: a lock file this old was left by a killed process (git holds one for milliseconds)
STALE_LOCK_SECONDS = 60.0


def remove_stale_lock(path: str) -> bool:
    """Remove the lock file at ``path`` if it is stale; True when it is gone (or was
    already), so that the locked operation can be tried again."""
    try:
        age = time.time() - os.stat(path).st_mtime
    except FileNotFoundError:
        return True
    if age < STALE_LOCK_SECONDS:
        return False
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return True


def clear_stale_locks(worktree: Repo, ref: bytes) -> None:
    """Remove the lock files a process killed in the middle of a commit leaves (the
    worktree's index, its branch): the session has one runner, so no live process holds
    them."""
    for lock in (
        Path(worktree.controldir()) / "index.lock",
        Path(worktree.commondir()) / (ref.decode() + ".lock"),
    ):
        lock.unlink(missing_ok=True)


def reset_hard(worktree: Repo, sha: bytes) -> None:
    """Put the worktree's branch at ``sha`` and its files exactly as that commit has them:
    changes undone, and files that are neither tracked nor ignored removed."""
    from dulwich.porcelain import reset

    reset(worktree, "hard", sha.decode("ascii"))
    ignore = IgnoreFilterManager.from_repo(worktree)
    root = Path(worktree.path)
    for relative in changed_paths(worktree):
        if _is_ignored(ignore, relative):
            continue
        target = root / relative
        if target.is_file() or target.is_symlink():
            target.unlink()
            _remove_empty_parents(target.parent, root)


def _commit(
    worktree: Repo, tree: bytes, *, message: str, author: str, extra_parents: Sequence[bytes]
) -> bytes:
    head = worktree.refs[HEAD]
    parent = worktree[head]
    assert isinstance(parent, Commit)
    if tree == parent.tree and not extra_parents:
        return head
    commit = new_commit(tree, [head, *extra_parents], message=message, author=author)
    worktree.object_store.add_object(commit)
    if not worktree.refs.set_if_equals(HEAD, head, commit.id):
        raise RepositoryError(
            Path(worktree.path).name, "the branch moved while a commit was being made"
        )
    return bytes(commit.id)


def new_commit(tree: bytes, parents: Sequence[bytes], *, message: str, author: str) -> Commit:
    commit = Commit()
    commit.tree = ObjectID(tree)
    commit.parents = [ObjectID(p) for p in parents]
    commit.author = author.encode("utf-8")
    commit.committer = f"Orchestra <{AUTHOR_EMAIL}>".encode()
    commit.commit_time = commit.author_time = int(time.time())
    commit.commit_timezone = commit.author_timezone = 0
    commit.encoding = b"UTF-8"
    commit.message = message.encode("utf-8")
    return commit


def tree_changes(repo: Repo, old: bytes, new: bytes) -> list[TreeChange]:
    from dulwich.diff_tree import tree_changes

    return list(tree_changes(repo.object_store, ObjectID(old), ObjectID(new)))


def _is_ignored(ignore: IgnoreFilterManager, path: str) -> bool:
    return bool(ignore.is_ignored(path))


def _remove_empty_parents(directory: Path, root: Path) -> None:
    while directory != root and directory.is_dir() and not any(directory.iterdir()):
        directory.rmdir()
        directory = directory.parent


def _symbolic_head(repo: Repo) -> bytes | None:
    try:
        chain, _ = repo.refs.follow(HEAD)
    except KeyError:
        return None
    return chain[-1] if len(chain) > 1 else None


def _short_ref(ref: bytes) -> str:
    return ref.decode("utf-8", errors="replace").removeprefix("refs/heads/")
