"""Helpers for the git workspace tests: real repositories made with dulwich, and what a
user (or `git`) would see of them."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from dulwich import porcelain
from dulwich.object_store import iter_tree_contents
from dulwich.objects import Blob, Commit
from dulwich.repo import Repo

from orchestra.config import Config, RepoConfig, WorkspaceConfig
from orchestra.llm.types import Request, Response

USER = b"User <user@example.com>"


def make_repo(path: Path, files: Mapping[str, str], *, branch: str = "main") -> Path:
    """A repository at ``path`` with ``files`` committed on ``branch``."""
    path.mkdir(parents=True, exist_ok=True)
    repo = porcelain.init(str(path))
    repo.refs.set_symbolic_ref(b"HEAD", b"refs/heads/" + branch.encode())
    commit_files(path, files, "initial commit")
    return path


def commit_files(path: Path, files: Mapping[str, str], message: str) -> bytes:
    """Write ``files`` in the user's checkout and commit them, as the user would."""
    for name, text in files.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    with Repo(str(path)) as repo:
        porcelain.add(repo, [str(path / name) for name in files])
        return bytes(porcelain.commit(repo, message=message.encode(), author=USER, committer=USER))


def checkout_state(path: Path) -> dict[str, str]:
    """Everything of a checkout a session must not change: HEAD, the branch it names,
    the index, and every file outside ``.git``, by content hash."""
    git = path / ".git"
    state = {"HEAD": (git / "HEAD").read_text()}
    head = state["HEAD"].removeprefix("ref: ").strip()
    if (git / head).is_file():
        state[head] = (git / head).read_text()
    if (git / "index").is_file():
        state["index"] = hashlib.sha256((git / "index").read_bytes()).hexdigest()
    for file in sorted(path.rglob("*")):
        if file.is_file() and ".git" not in file.relative_to(path).parts:
            state[str(file.relative_to(path))] = hashlib.sha256(file.read_bytes()).hexdigest()
    return state


def branch_commits(path: Path, branch: str) -> list[Commit]:
    """The commits on ``branch``, newest first."""
    with Repo(str(path)) as repo:
        head = repo.refs[b"refs/heads/" + branch.encode()]
        return [entry.commit for entry in repo.get_walker(include=[head])]


def branch_files(path: Path, branch: str) -> dict[str, str]:
    """The files at the head of ``branch``, as text."""
    with Repo(str(path)) as repo:
        commit = repo[repo.refs[b"refs/heads/" + branch.encode()]]
        assert isinstance(commit, Commit)
        files = {}
        for entry in iter_tree_contents(repo.object_store, commit.tree):
            blob = repo.object_store[entry.sha]
            assert isinstance(blob, Blob)
            files[entry.path.decode()] = blob.data.decode()
        return files


def branches(path: Path) -> list[str]:
    with Repo(str(path)) as repo:
        return sorted(ref.decode() for ref in repo.refs.keys(base=b"refs/heads/"))


def trailers(commit: Commit) -> dict[str, str]:
    """A commit's ``Orchestra-*`` trailers."""
    found = {}
    for line in commit.message.decode().splitlines():
        key, sep, value = line.partition(": ")
        if sep and key.startswith("Orchestra-"):
            found[key] = value
    return found


def git_cli(path: Path, *args: str) -> str:
    """`git -C path ARGS`: the git CLI as an independent check of what dulwich wrote."""
    if shutil.which("git") is None:
        pytest.skip("the git command is not installed")
    done = subprocess.run(
        ["git", "-C", str(path), *args], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def config_with(repos: Mapping[str, Path | RepoConfig], **settings: object) -> Config:
    """A configuration with these repositories (a path, or a full ``RepoConfig``)."""
    made = {
        name: value if isinstance(value, RepoConfig) else RepoConfig(path=value)
        for name, value in repos.items()
    }
    workspace = WorkspaceConfig(repos=made, tools=settings.pop("tools", {}))  # type: ignore[arg-type]
    return Config(workspace=workspace, **settings)  # type: ignore[arg-type]


#: three agents in parallel, a fan-in, and a resolver the graph routes a merge conflict to;
#: each agent's prompt carries its ``[node]`` marker for ``NodeModel`` (or the fake server)
FAN_OUT = """
digraph review {
    start [shape=Mdiamond]
    exit  [shape=Msquare]
    fan   [shape=component]
    a     [prompt="[a] write your part", llm_model="worker"]
    b     [prompt="[b] write your part", llm_model="worker"]
    c     [prompt="[c] write your part", llm_model="worker"]
    join  [shape=tripleoctagon]
    resolve [shape=parallelogram, tool_command="echo resolving"]
    start -> fan
    fan -> a -> join
    fan -> b -> join
    fan -> c -> join
    join -> resolve [condition="outcome=partial_success"]
    join -> exit
    resolve -> exit
}
"""


class NodeModel:
    """A provider adapter answering each conversation from its own script, chosen by a
    marker its first user message holds (``[a]`` in agent a's prompt): parallel agents ask
    in any order. A step is a ``Response`` or an exception to raise. Keeps every request."""

    name = "anthropic"

    def __init__(self, scripts: Mapping[str, Sequence[Response | Exception]]) -> None:
        self.scripts = {marker: list(steps) for marker, steps in scripts.items()}
        self.requests: list[Request] = []

    async def complete(self, request: Request) -> Response:
        self.requests.append(request)
        opening = next(m.text for m in request.messages if m.role.value == "user")
        for marker, steps in self.scripts.items():
            if marker in opening:
                step = steps.pop(0)
                if isinstance(step, Exception):
                    raise step
                return step
        raise AssertionError(f"no script for the prompt {opening!r}")

    async def close(self) -> None:
        return None
