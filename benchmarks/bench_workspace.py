"""What the git workspace layer (orchestra/workspace/git.py, dulwich) costs, next to the git CLI.

1. A per-turn commit of a ``--changed``-file change: ``commit_paths`` on a worktree whose
   files were rewritten, against what a git-CLI implementation runs per turn: ``git add --
   FILES`` then ``git commit -q -m MSG --no-verify``. ``--commits`` commits on each side, each
   on a worktree and branch of its own in the same repository, interleaved (who goes first
   alternates), the same files changed on both; rewriting them is not timed.
2. ``--worktrees`` worktrees on branches from one commit (``ensure_branch`` + ``add_worktree``),
   a distinct new file committed in each, all merged in order into a main worktree with
   ``merge_into`` (the first fast-forwards, the rest are three-way merges), then removed
   (``remove_worktree`` + ``delete_branch``); against ``git worktree add -b``, add + commit,
   ``git merge --no-edit``, ``git worktree remove --force`` + ``git branch -D``. Each phase
   timed whole; median of ``--rounds`` rounds, who goes first alternating.

The repository (``--files`` files of ``--size`` bytes in ``--dirs`` directories) is made with
dulwich in a temporary directory: the system's, or one under ``--dir`` (creating a file may
cost several times more on one filesystem than on another, on both sides). Global and system
git config are ignored by both sides. Without git on PATH only dulwich's figures print.
``--profile`` then runs ``--commits`` more dulwich commits under cProfile and prints where
they spend their time.

    uv run python benchmarks/bench_workspace.py [--files 300] [--commits 50] [--profile]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import os
import pstats
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import dulwich
from dulwich.diff_tree import tree_changes
from dulwich.objects import Commit
from dulwich.repo import Repo

from orchestra.workspace import git as ws
from orchestra.workspace.merge import merge_into

AUTHOR = f"Orchestra <{ws.AUTHOR_EMAIL}>"
IDENTITY = ("-c", "user.name=Orchestra", "-c", f"user.email={ws.AUTHOR_EMAIL}")
PHASES = ("create", "commit", "merge", "remove")


def git(*args: str | bytes | Path) -> None:
    subprocess.run(["git", *map(os.fsdecode, args)], check=True, stdout=subprocess.DEVNULL)


@contextlib.contextmanager
def quiet_heap() -> Iterator[None]:
    """As in bench_engine.py: what `orchestra run` does after loading."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextlib.contextmanager
def timed(times: dict[str, float], phase: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    times[phase] = time.perf_counter() - started


def text(tag: str, size: int) -> bytes:
    """About ``size`` bytes of lines of text, distinct for every ``tag``."""
    return f"{tag}: the quick brown fox jumps over the lazy dog\n".encode() * (size // 64 + 1)


def make_repository(path: Path, files: int, dirs: int, size: int) -> list[str]:
    names = [f"src/pkg{i % dirs:02d}/module{i:04d}.py" for i in range(files)]
    for name in names:
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(text(name, size))
    repo = Repo.init(str(path), mkdir=False)
    repo.get_worktree().stage(names)
    repo.get_worktree().commit(
        message=b"initial", author=AUTHOR.encode(), committer=AUTHOR.encode()
    )
    return names


def rewrite(root: Path, names: list[str], turn: int) -> None:
    """A turn's edit: each file's first line replaced."""
    for name in names:
        body = (root / name).read_bytes().split(b"\n", 1)[1]
        (root / name).write_bytes(f"# turn {turn}\n".encode() + body)


def bench_commits(
    repo: Repo, root: Path, start: bytes, names: list[str], args: argparse.Namespace, cli: bool
) -> dict[str, list[float]]:
    ws.ensure_branch(repo, b"refs/heads/commit-dulwich", start)
    mine_path, theirs_path = root / "commit-dulwich", root / "commit-git"
    mine = ws.add_worktree(repo, mine_path, b"refs/heads/commit-dulwich", "commit-dulwich")
    if cli:
        git("-C", repo.path, "worktree", "add", "-q", "-b", "commit-git", theirs_path, start)

    def dulwich_commit(turn: int, changed: list[str]) -> None:
        assert ws.commit_paths(mine, changed, message=f"turn {turn}", author=AUTHOR)

    def git_commit(turn: int, changed: list[str]) -> None:
        git("-C", theirs_path, "add", "--", *changed)
        git("-C", theirs_path, *IDENTITY, "commit", "-q", "-m", f"turn {turn}", "--no-verify")

    sides = [("dulwich", mine_path, dulwich_commit), ("git", theirs_path, git_commit)][: 1 + cli]
    times: dict[str, list[float]] = {label: [] for label, _, _ in sides}
    rng = random.Random(0)
    with quiet_heap():
        for turn in range(args.commits):
            changed = rng.sample(names, args.changed)
            for label, path, commit in sides[:: 1 if turn % 2 else -1]:
                rewrite(path, changed, turn)
                started = time.perf_counter()
                commit(turn, changed)
                times[label].append(time.perf_counter() - started)
    for ref in (b"refs/heads/commit-dulwich", b"refs/heads/commit-git")[: len(sides)]:
        head = repo[ws.head_sha(repo, ref)]
        assert isinstance(head, Commit)
        parent = repo[head.parents[0]]
        assert isinstance(parent, Commit)
        changes = list(tree_changes(repo.object_store, parent.tree, head.tree))
        assert len(changes) == args.changed, (ref, len(changes))
    if args.profile:
        profile = cProfile.Profile()
        for turn in range(args.commits, 2 * args.commits):
            changed = rng.sample(names, args.changed)
            rewrite(mine_path, changed, turn)
            profile.runcall(dulwich_commit, turn, changed)
        print(f"cProfile of {args.commits} more dulwich commits (commit_paths):")
        pstats.Stats(profile).strip_dirs().sort_stats("cumulative").print_stats(30)
    return times


def dulwich_fan(repo: Repo, root: Path, start: bytes, count: int, tag: str) -> dict[str, float]:
    main_ref = f"refs/heads/{tag}-main".encode()
    ws.ensure_branch(repo, main_ref, start)
    main = ws.add_worktree(repo, root / f"{tag}-main", main_ref, f"{tag}-main")
    refs = [f"refs/heads/{tag}-{i}".encode() for i in range(count)]
    paths = [root / f"{tag}-{i}" for i in range(count)]
    times: dict[str, float] = {}
    with timed(times, "create"):
        trees = []
        for ref, path in zip(refs, paths, strict=True):
            ws.ensure_branch(repo, ref, start)
            trees.append(ws.add_worktree(repo, path, ref, path.name))
    for path in paths:
        (path / f"{path.name}.txt").write_bytes(text(path.name, 2048))
    with timed(times, "commit"):
        for tree, path in zip(trees, paths, strict=True):
            assert ws.commit_paths(tree, [f"{path.name}.txt"], message="add", author=AUTHOR)
    with timed(times, "merge"):
        results = [
            merge_into(main, ws.head_sha(repo, ref), message=f"merge {ref!r}", author=AUTHOR)
            for ref in refs
        ]
    assert all(r.sha is not None for r in results)
    assert [r.fast_forward for r in results] == [True] + [False] * (count - 1)
    with timed(times, "remove"):
        for ref, path in zip(refs, paths, strict=True):
            ws.remove_worktree(repo, path)
            ws.delete_branch(repo, ref)
    assert all((root / f"{tag}-main" / f"{p.name}.txt").is_file() for p in paths)
    ws.remove_worktree(repo, root / f"{tag}-main")
    ws.delete_branch(repo, main_ref)
    return times


def git_fan(repo: Repo, root: Path, start: bytes, count: int, tag: str) -> dict[str, float]:
    main = root / f"{tag}-main"
    git("-C", repo.path, "worktree", "add", "-q", "-b", f"{tag}-main", main, start)
    paths = [root / f"{tag}-{i}" for i in range(count)]
    times: dict[str, float] = {}
    with timed(times, "create"):
        for path in paths:
            git("-C", repo.path, "worktree", "add", "-q", "-b", path.name, path, start)
    for path in paths:
        (path / f"{path.name}.txt").write_bytes(text(path.name, 2048))
    with timed(times, "commit"):
        for path in paths:
            git("-C", path, "add", "--", f"{path.name}.txt")
            git("-C", path, *IDENTITY, "commit", "-q", "-m", "add", "--no-verify")
    with timed(times, "merge"):
        for path in paths:
            git("-C", main, *IDENTITY, "merge", "--no-edit", "-q", path.name)
    with timed(times, "remove"):
        for path in paths:
            git("-C", repo.path, "worktree", "remove", "--force", path)
            git("-C", repo.path, "branch", "-D", "-q", path.name)
    assert all((main / f"{p.name}.txt").is_file() for p in paths)
    git("-C", repo.path, "worktree", "remove", "--force", main)
    git("-C", repo.path, "branch", "-D", "-q", f"{tag}-main")
    return times


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=300, help="files in the repository")
    parser.add_argument("--dirs", type=int, default=12, help="directories they are spread over")
    parser.add_argument("--size", type=int, default=2048, help="bytes per file, about")
    parser.add_argument("--changed", type=int, default=10, help="files changed per turn")
    parser.add_argument("--commits", type=int, default=50, help="per-turn commits per side")
    parser.add_argument("--worktrees", type=int, default=20, help="worktrees to merge")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of part 2 (median)")
    parser.add_argument("--profile", action="store_true", help="profile commit_paths too")
    parser.add_argument("--dir", type=Path, help="where to make the temporary directory")
    args = parser.parse_args()
    os.environ.update(GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1")
    cli = shutil.which("git") is not None
    with tempfile.TemporaryDirectory(dir=args.dir, prefix=".bench-") as tmp:
        root = Path(tmp).resolve()  # git -C DIR takes relative paths from DIR
        names = make_repository(root / "repo", args.files, args.dirs, args.size)
        repo = ws.open_repository("repo", root / "repo")
        start = ws.start_commit("repo", repo)
        commits = bench_commits(repo, root, start, names, args, cli)
        fans: dict[str, list[dict[str, float]]] = {"dulwich": [], "git": []}
        for round_ in range(args.rounds):  # the side that goes first alternates
            for label in ("dulwich", "git")[:: -1 if round_ % 2 else 1][: 1 + cli]:
                fan = dulwich_fan if label == "dulwich" else git_fan
                with quiet_heap():
                    fans[label].append(fan(repo, root, start, args.worktrees, f"{label}{round_}"))

    git_version = "git not on PATH, so the git CLI baseline cannot be measured"
    if cli:
        git_version = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout
        git_version = git_version.strip()
    print(
        f"Repository: {args.files} files of about {args.size} bytes in {args.dirs} directories,"
        f" under {root.parent}; dulwich {'.'.join(map(str, dulwich.__version__))}; {git_version}"
    )
    print(
        f"\n1. per-turn commit of a {args.changed}-file change, {args.commits} commits each,"
        " interleaved (range in brackets)"
    )
    labels = {"dulwich": "dulwich commit_paths", "git": "git add + git commit"}
    for label, seconds in commits.items():
        print(
            f"   {labels[label]}  median {ms(statistics.median(seconds))}"
            f"  mean {ms(statistics.mean(seconds))}"
            f"  [{min(seconds) * 1000:.1f}-{max(seconds) * 1000:.1f} ms]"
        )
    if "git" in commits:
        ratio = statistics.median(commits["dulwich"]) / statistics.median(commits["git"])
        mean = statistics.mean(commits["dulwich"]) / statistics.mean(commits["git"])
        print(
            f"   dulwich / git = {ratio:.2f} (median), {mean:.2f} (mean); target (a per-turn commit"
            f" costs at most the git CLI's): {'holds' if ratio <= 1 else 'DOES NOT HOLD'}"
        )
    print(
        f"\n2. {args.worktrees} worktrees from one commit: create, commit a file in each, merge"
        f" each in order into a main worktree, remove; median of {args.rounds} rounds"
    )
    header = f"{'dulwich total':>16}{'each':>12}{'git total':>16}{'each':>12}{'dulwich / git':>16}"
    print(f"   {'':8}{header[: None if cli else 28]}")
    for phase in PHASES:
        totals = [
            statistics.median(run[phase] for run in fans[label]) for label in fans if fans[label]
        ]
        line = "".join(f"{ms(total):>16}{ms(total / args.worktrees):>12}" for total in totals)
        print(f"   {phase:<8}{line}" + (f"{totals[0] / totals[1]:>16.2f}" if cli else ""))


if __name__ == "__main__":
    main()
