"""The change to review, for the pr-review pipeline's get_diff stage.

    python get_diff.py --out DIR [--repo PATH --base REF --head REF] [--pr N] [--budget N]

Prints the diff (cut to --budget characters, whole files first, with the list of the files
left out) and writes DIR/diff.patch (the whole diff) and DIR/head/ (the files at the head
of the change, for the reviewers to read beyond the diff). The change is, in order:

- pull request N of the repository you are in, with --pr N: `gh pr diff N` (GitHub's CLI
  must be installed and logged in);
- BASE..HEAD of the git repository at --repo (defaults: main, HEAD);
- without either, a small demo change made for the occasion in DIR/demo-repo: a search
  function that builds its SQL by string concatenation.

It needs only Python and dulwich (Orchestra's own git library), no git command.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from dulwich.objectspec import parse_commit
from dulwich.patch import write_tree_diff
from dulwich.repo import Repo

DEFAULT_BUDGET = 48_000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="where to write the files")
    parser.add_argument("--repo", default="", help="a local git repository")
    parser.add_argument("--base", default="", help="the base of the change (default main)")
    parser.add_argument("--head", default="", help="the head of the change (default HEAD)")
    parser.add_argument("--pr", default="", help="a pull request number, for gh")
    parser.add_argument("--budget", type=int, default=DEFAULT_BUDGET, help="characters shown")
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    head_dir = out / "head"
    if head_dir.exists():
        shutil.rmtree(head_dir)
    head_dir.mkdir()

    if args.pr:
        diff, where = _pull_request(str(args.pr)), f"pull request #{args.pr}"
        if args.repo:
            _export(Repo(args.repo), args.head or "HEAD", head_dir)
    else:
        repo_path = Path(args.repo) if args.repo else _demo_repo(out / "demo-repo")
        repo = Repo(str(repo_path))
        base, head = args.base or "main", args.head or "HEAD"
        diff = _diff(repo, base, head)
        _export(repo, head, head_dir)
        where = f"{repo_path} {base}..{head}" + ("" if args.repo else " (the bundled demo)")
    if not diff.strip():
        print(f"error: {where} changes nothing: there is nothing to review", file=sys.stderr)
        return 1
    (out / "diff.patch").write_text(diff, encoding="utf-8")
    shown, left_out = cut(diff, args.budget)
    text = f"# The change: {where}\n\n{shown.rstrip()}\n"
    if left_out:
        text += (
            f"\n# {len(left_out)} file(s) left out of this view (the diff is larger than "
            f"{args.budget:,} characters); read them in the tree:\n"
        )
        text += "".join(f"#   {name}\n" for name in left_out)
    print(text, end="")
    files = len(re.findall(r"(?m)^diff --git ", diff))
    _status(
        f"{files} file(s) changed in {where}"
        + (f", {len(left_out)} left out of the reviewers' view" if left_out else ""),
        {"review.diff": text, "review.where": where, "review.head": str(head_dir.resolve())},
    )
    return 0


def _status(notes: str, updates: dict[str, str]) -> None:
    """The stage's outcome, with the diff for the reviewers' prompts, when run as a stage."""
    stage_dir = os.environ.get("ATTRACTOR_STAGE_DIR")
    if stage_dir:
        status = {"outcome": "success", "notes": notes, "context_updates": updates}
        Path(stage_dir, "status.json").write_text(json.dumps(status), encoding="utf-8")


def _pull_request(number: str) -> str:
    if shutil.which("gh") is None:
        print(
            "error: --pr needs GitHub's CLI, `gh`, which is not on PATH: install it "
            "(https://cli.github.com) and run `gh auth login`, or review a local change with "
            "repo=PATH base=REF head=REF instead",
            file=sys.stderr,
        )
        sys.exit(1)
    done = subprocess.run(["gh", "pr", "diff", number], capture_output=True, text=True)
    if done.returncode != 0:
        print(f"error: gh pr diff {number} failed: {done.stderr.strip()}", file=sys.stderr)
        sys.exit(1)
    return done.stdout


def _diff(repo: Repo, base: str, head: str) -> str:
    old, new = _commit(repo, base), _commit(repo, head)
    buffer = io.BytesIO()
    write_tree_diff(buffer, repo.object_store, old.tree, new.tree)
    return buffer.getvalue().decode("utf-8", errors="replace")


def _commit(repo: Repo, ref: str):  # type: ignore[no-untyped-def]
    try:
        return parse_commit(repo, ref.encode())
    except KeyError:
        print(f"error: {repo.path} has no commit or branch named {ref!r}", file=sys.stderr)
        sys.exit(1)


def _export(repo: Repo, ref: str, target: Path) -> None:
    """The files of ``ref``'s tree, written under ``target``."""
    tree = _commit(repo, ref).tree
    for entry in repo.object_store.iter_tree_contents(tree):
        if entry.path is None or entry.sha is None or entry.mode is None:
            continue
        if entry.mode & 0o170000 != 0o100000:  # not a regular file (a link, a submodule)
            continue
        path = target / entry.path.decode("utf-8", errors="replace")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(repo.object_store[entry.sha].as_raw_string())


def cut(diff: str, budget: int) -> tuple[str, list[str]]:
    """Whole files of ``diff`` while they fit in ``budget`` characters; the names of the
    files left out."""
    chunks = [chunk for chunk in re.split(r"(?m)^(?=diff --git )", diff) if chunk]
    shown: list[str] = []
    left_out: list[str] = []
    used = 0
    for chunk in chunks:
        if used + len(chunk) <= budget:
            shown.append(chunk)
            used += len(chunk)
        else:
            first = chunk.split("\n", 1)[0]
            left_out.append(first.split(" b/", 1)[-1] if " b/" in first else first[:80])
    return "".join(shown), left_out


def _demo_repo(path: Path) -> Path:
    """A repository with a change on `feature` that adds a search building its SQL by
    string concatenation (an injection), and a test that does not catch it."""
    if (path / ".git").is_dir():
        return path
    from dulwich import porcelain

    path.mkdir(parents=True, exist_ok=True)
    repo = porcelain.init(str(path))
    repo.refs.set_symbolic_ref(b"HEAD", b"refs/heads/main")
    author = b"Demo <demo@example.com>"

    def commit(files: dict[str, str], message: bytes) -> None:
        for name, text in files.items():
            (path / name).write_text(text, encoding="utf-8")
        porcelain.add(repo, [str(path / name) for name in files])
        porcelain.commit(repo, message, author=author, committer=author)

    commit({"users.py": BASE_USERS, "README.md": "# users\n\nA tiny user store.\n"}, b"Users")
    repo.refs[b"refs/heads/feature"] = repo.refs[b"refs/heads/main"]
    repo.refs.set_symbolic_ref(b"HEAD", b"refs/heads/feature")
    commit(
        {"users.py": BASE_USERS + FEATURE_SEARCH, "test_users.py": FEATURE_TEST},
        b"Search users by name",
    )
    return path


BASE_USERS = '''\
"""A tiny user store on sqlite3."""

import sqlite3


def connect(path=":memory:"):
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT)")
    return db


def add_user(db, name):
    db.execute("INSERT INTO users (name) VALUES (?)", (name,))
    db.commit()
'''

FEATURE_SEARCH = '''

def search_users(db, name):
    """The users whose name contains ``name``."""
    query = "SELECT id, name FROM users WHERE name LIKE '%" + name + "%'"
    return db.execute(query).fetchall()
'''

FEATURE_TEST = '''\
from users import add_user, connect, search_users


def test_search_finds_a_user():
    db = connect()
    add_user(db, "Ada")
    assert search_users(db, "Ad") == [(1, "Ada")]
'''


if __name__ == "__main__":
    sys.exit(main())
