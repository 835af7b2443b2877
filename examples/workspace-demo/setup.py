"""Make examples/workspace-demo/project a git repository: a copy of template/, committed.

    uv run python examples/workspace-demo/setup.py

Run it once before the example. It does nothing when project/ is already a repository, so
running it again is safe; delete project/ to start over. Uses dulwich, so no git command
is needed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from dulwich import porcelain

HERE = Path(__file__).resolve().parent
PROJECT = HERE / "project"
AUTHOR = b"Workspace Demo <demo@example.com>"


def main() -> None:
    if (PROJECT / ".git").exists():
        print(f"{PROJECT} is already a git repository; nothing to do")
        return
    shutil.copytree(HERE / "template", PROJECT, dirs_exist_ok=True)
    repo = porcelain.init(str(PROJECT))
    repo.refs.set_symbolic_ref(b"HEAD", b"refs/heads/main")
    files = [
        str(path) for path in PROJECT.rglob("*") if path.is_file() and ".git" not in path.parts
    ]
    porcelain.add(repo, files)
    porcelain.commit(
        repo, message=b"A calculator with a failing test", author=AUTHOR, committer=AUTHOR
    )
    repo.close()
    print(f"made {PROJECT} a git repository on branch main, with one commit")


if __name__ == "__main__":
    main()
