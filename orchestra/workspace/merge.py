"""Merging a parallel branch's worktree into the line it was forked from (dulwich's
three-way merge, merge3 for text)."""

from __future__ import annotations

import os
from pathlib import Path

import attrs
from dulwich.graph import find_merge_base
from dulwich.objects import Blob, Commit, ObjectID, Tree
from dulwich.repo import Repo

from orchestra.errors import RepositoryError
from orchestra.workspace.git import HEAD, new_commit, tree_changes

__all__ = ["MergeResult", "merge_into"]


@attrs.frozen
class MergeResult:
    """A merge's outcome: the new head (None when it conflicted, and nothing changed) and
    the conflicting files with their text, conflict markers included."""

    sha: bytes | None
    conflicts: dict[str, str] = attrs.field(factory=dict)
    fast_forward: bool = False
    #: False when the branch had nothing the target did not already have
    merged: bool = True


def merge_into(worktree: Repo, theirs: bytes, *, message: str, author: str) -> MergeResult:
    """Merge commit ``theirs`` into the worktree's branch and check the result out. A
    branch already contained is a no-op; one that only adds commits is fast-forwarded;
    otherwise a three-way merge, committed only when no file conflicts."""
    from dulwich.merge import three_way_merge

    ours = worktree.refs[HEAD]
    if ours == theirs:
        return MergeResult(ours, merged=False)
    bases = find_merge_base(worktree, [ours, ObjectID(theirs)])
    if theirs in bases:
        return MergeResult(ours, merged=False)
    if ours in bases:
        _advance(worktree, ours, theirs)
        return MergeResult(theirs, fast_forward=True)
    ours_commit, theirs_commit = worktree[ours], worktree[theirs]
    assert isinstance(ours_commit, Commit)
    assert isinstance(theirs_commit, Commit)
    base = worktree[bases[0]] if bases else None
    assert base is None or isinstance(base, Commit)
    tree, conflicted = three_way_merge(worktree.object_store, base, ours_commit, theirs_commit)
    worktree.object_store.add_object(tree)
    if conflicted:
        return MergeResult(None, {os.fsdecode(p): _text_at(worktree, tree, p) for p in conflicted})
    merge = _merge_commit(worktree, tree.id, ours, theirs, message=message, author=author)
    _advance(worktree, ours, merge)
    return MergeResult(merge)


def _advance(worktree: Repo, old: bytes, new: bytes) -> None:
    """Move a clean worktree's branch from commit ``old`` to ``new``, writing only the files
    that differ (a hard reset would compare every file of the tree)."""
    from dulwich.index import update_working_tree

    old_commit, new_commit = worktree[ObjectID(old)], worktree[ObjectID(new)]
    assert isinstance(old_commit, Commit)
    assert isinstance(new_commit, Commit)
    changes = tree_changes(worktree, old_commit.tree, new_commit.tree)
    update_working_tree(
        worktree,
        old_commit.tree,
        new_commit.tree,
        change_iterator=iter(changes),
        allow_overwrite_modified=True,
    )
    if not worktree.refs.set_if_equals(HEAD, ObjectID(old), ObjectID(new)):
        raise RepositoryError(Path(worktree.path).name, "the branch moved during a merge")


def _merge_commit(
    worktree: Repo, tree: bytes, ours: bytes, theirs: bytes, *, message: str, author: str
) -> bytes:
    """A merge commit of ``ours`` and ``theirs`` with ``tree``, not yet on any branch."""
    commit = new_commit(tree, [ours, theirs], message=message, author=author)
    worktree.object_store.add_object(commit)
    return bytes(commit.id)


def _text_at(repo: Repo, tree: Tree, path: bytes) -> str:
    from dulwich.object_store import tree_lookup_path

    try:
        _, sha = tree_lookup_path(repo.object_store.__getitem__, tree.id, path)
    except KeyError:
        return ""
    blob = repo.object_store[sha]
    return blob.data.decode("utf-8", errors="replace") if isinstance(blob, Blob) else ""
