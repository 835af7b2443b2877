"""The agent's standard tools on real files in a temporary workspace, with real subprocesses."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from orchestra.agent.tools import (
    OUTPUT_LIMITS,
    OutputLimit,
    ToolOutput,
    Toolset,
    Workspace,
    WorkspaceError,
    filter_environment,
    truncate_chars,
    truncate_lines,
    truncate_output,
)
from orchestra.llm.types import ToolCall, ToolResult

TIMEOUT_MESSAGE = (
    "[ERROR: Command timed out after 300ms. Partial output is shown above.\n"
    "You can retry with a longer timeout by setting the timeout_ms parameter.]"
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The workspace directory."""
    path = tmp_path / "ws"
    path.mkdir()
    return path


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory next to the workspace, holding a file no tool may touch."""
    path = tmp_path / "outside"
    path.mkdir()
    (path / "secret.txt").write_text("secret\n")
    return path


@pytest.fixture
def toolset(root: Path) -> Toolset:
    return Toolset(Workspace(root))


async def call(toolset: Toolset, name: str, **arguments: Any) -> ToolOutput:
    return await toolset.run(ToolCall("call-1", name, arguments))


def is_running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie nobody reaped does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


async def wait_for_exit(pid: int) -> None:
    """Wait until ``pid`` has exited, on a pidfd (an event, not polling), at most 5 s."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        with anyio.fail_after(5):
            await anyio.wait_readable(fd)
    finally:
        os.close(fd)


async def read_fifo(path: Path) -> str:
    """What a writer puts into the FIFO at ``path``, awaited without blocking a thread."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        with anyio.fail_after(5):
            await anyio.wait_readable(fd)
        return os.read(fd, 1024).decode()
    finally:
        os.close(fd)


class TestWorkspace:
    def test_relative_paths_resolve_under_the_root(self, root: Path) -> None:
        """A relative path is taken from the workspace root."""
        assert Workspace(root).resolve("a/b.txt") == root.resolve() / "a" / "b.txt"

    def test_absolute_path_inside_is_allowed(self, root: Path) -> None:
        """An absolute path inside the workspace is accepted as it is."""
        assert Workspace(root).resolve(str(root / "x.txt")) == root.resolve() / "x.txt"

    def test_dotdot_that_stays_inside_is_allowed(self, root: Path) -> None:
        """'..' is fine as long as the path ends up inside the workspace."""
        assert Workspace(root).resolve("sub/../x.txt") == root.resolve() / "x.txt"

    def test_root_reached_through_a_symlink_is_stored_as_its_real_path(
        self, root: Path, tmp_path: Path
    ) -> None:
        """A workspace opened through a symlink still accepts paths under its real root."""
        alias = tmp_path / "alias"
        alias.symlink_to(root)
        workspace = Workspace(alias)
        assert workspace.root == root.resolve()
        assert workspace.resolve(str(alias / "x.txt")) == root.resolve() / "x.txt"

    @pytest.mark.parametrize("path", ["..", "../outside/secret.txt", "/etc/passwd"])
    def test_escapes_raise_workspace_error(self, root: Path, path: str) -> None:
        """resolve() refuses a path outside the workspace with a WorkspaceError."""
        with pytest.raises(WorkspaceError, match="outside the workspace"):
            Workspace(root).resolve(path)

    def test_symlink_escape_is_named_as_such(self, root: Path, outside: Path) -> None:
        """The refusal of a symlink pointing out says a symbolic link leads outside."""
        (root / "link").symlink_to(outside)
        with pytest.raises(WorkspaceError, match="through a symbolic link"):
            Workspace(root).resolve("link/secret.txt")


ESCAPES = {
    "dotdot": "../outside/secret.txt",
    "absolute_outside": "{outside}/secret.txt",
    "symlink_to_etc": "etc_link",
    "file_symlink_pointing_out": "secret_link",
    "symlinked_directory": "out_link",
    "through_symlinked_parent": "out_link/secret.txt",
    "new_path_under_symlinked_parent": "out_link/new/deep.txt",
    "dangling_symlink_pointing_out": "dangling_link",
}

FILE_TOOL_ARGUMENTS: dict[str, Callable[[str], dict[str, Any]]] = {
    "read_file": lambda path: {"file_path": path},
    "write_file": lambda path: {"file_path": path, "content": "pwned"},
    "edit_file": lambda path: {"file_path": path, "old_string": "secret", "new_string": "pwned"},
    "grep": lambda path: {"pattern": "secret", "path": path},
    "glob": lambda path: {"pattern": "*", "path": path},
}


def snapshot(directory: Path) -> dict[str, bytes | None]:
    return {
        path.relative_to(directory).as_posix(): path.read_bytes() if path.is_file() else None
        for path in directory.rglob("*")
    }


class TestConfinement:
    @pytest.fixture
    def links(self, root: Path, outside: Path) -> None:
        """Symbolic links inside the workspace that point outside it."""
        (root / "etc_link").symlink_to("/etc")
        (root / "secret_link").symlink_to(outside / "secret.txt")
        (root / "out_link").symlink_to(outside)
        (root / "dangling_link").symlink_to(outside / "created.txt")
        (root / "inside.txt").write_text("inside\n")

    @pytest.mark.usefixtures("links")
    @pytest.mark.parametrize("escape", list(ESCAPES))
    @pytest.mark.parametrize("tool", list(FILE_TOOL_ARGUMENTS))
    async def test_file_tools_refuse_paths_leading_outside(
        self, toolset: Toolset, outside: Path, tool: str, escape: str
    ) -> None:
        """Every file tool answers an error for each way out, and nothing outside changes."""
        before = snapshot(outside)
        path = ESCAPES[escape].format(outside=outside)
        output = await call(toolset, tool, **FILE_TOOL_ARGUMENTS[tool](path))
        assert output.is_error
        assert "outside the workspace" in output.text
        assert output.files_written == ()
        assert snapshot(outside) == before

    @pytest.mark.usefixtures("links")
    async def test_grep_over_the_workspace_skips_links_pointing_out(self, toolset: Toolset) -> None:
        """Searching the whole workspace reads no file through a link that leads outside."""
        output = await call(toolset, "grep", pattern="secret|root:")
        assert not output.is_error
        assert output.text == "No matches for 'secret|root:' in ."

    @pytest.mark.usefixtures("links")
    async def test_glob_lists_nothing_outside(self, toolset: Toolset) -> None:
        """A recursive glob lists workspace files only, not links that lead outside."""
        output = await call(toolset, "glob", pattern="**/*")
        assert output.text == "inside.txt"

    async def test_glob_pattern_cannot_climb_out(self, toolset: Toolset, outside: Path) -> None:
        """A '..' in a glob pattern matches nothing outside the workspace."""
        output = await call(toolset, "glob", pattern="../outside/*")
        assert output.text == "No paths match '../outside/*' in ."


class TestReadFile:
    async def test_lines_are_numbered(self, toolset: Toolset, root: Path) -> None:
        """Each line comes as 'N | content', numbers padded to the widest shown."""
        (root / "f.txt").write_text("".join(f"line {n}\n" for n in range(1, 13)))
        output = await call(toolset, "read_file", file_path="f.txt", offset=8, limit=3)
        assert output.text == (
            " 8 | line 8\n 9 | line 9\n10 | line 10\n"
            "[showing lines 8-10 of 12; read on with offset=11]"
        )

    async def test_whole_short_file(self, toolset: Toolset, root: Path) -> None:
        """Without offset and limit the whole file is shown, with no paging note."""
        (root / "f.txt").write_text("a\nb")
        output = await call(toolset, "read_file", file_path="f.txt")
        assert output == ToolOutput("1 | a\n2 | b")

    async def test_empty_file(self, toolset: Toolset, root: Path) -> None:
        """An empty file is reported as empty, not as an error."""
        (root / "empty.txt").write_text("")
        output = await call(toolset, "read_file", file_path="empty.txt")
        assert output == ToolOutput("(empty.txt is empty)")

    async def test_offset_past_the_end(self, toolset: Toolset, root: Path) -> None:
        """An offset after the last line is an error naming the file's length."""
        (root / "f.txt").write_text("a\nb\n")
        output = await call(toolset, "read_file", file_path="f.txt", offset=5)
        assert output == ToolOutput("offset 5 is past the end of f.txt (2 lines)", True)

    async def test_missing_file(self, toolset: Toolset) -> None:
        """A file that does not exist is an error."""
        output = await call(toolset, "read_file", file_path="nope.txt")
        assert output == ToolOutput("File not found: nope.txt", True)

    async def test_directory(self, toolset: Toolset, root: Path) -> None:
        """A directory is an error pointing at glob."""
        (root / "sub").mkdir()
        output = await call(toolset, "read_file", file_path="sub")
        assert output == ToolOutput("sub is a directory, not a file; use glob to list it", True)

    async def test_binary_file(self, toolset: Toolset, root: Path) -> None:
        """A file with NUL bytes is refused as binary."""
        (root / "blob.bin").write_bytes(b"\x89PNG\0\0\x01")
        output = await call(toolset, "read_file", file_path="blob.bin")
        assert output.is_error
        assert "blob.bin is a binary file" in output.text


class TestWriteFile:
    async def test_creates_parents_and_counts_bytes(self, toolset: Toolset, root: Path) -> None:
        """Missing directories are created; the answer gives the UTF-8 byte count."""
        output = await call(toolset, "write_file", file_path="a/b/c.txt", content="héllo\n")
        assert output == ToolOutput("Wrote 7 bytes to a/b/c.txt", files_written=("a/b/c.txt",))
        assert (root / "a/b/c.txt").read_text(encoding="utf-8") == "héllo\n"

    async def test_overwrites(self, toolset: Toolset, root: Path) -> None:
        """An existing file is replaced whole."""
        (root / "f.txt").write_text("old content\n")
        await call(toolset, "write_file", file_path="f.txt", content="new")
        assert (root / "f.txt").read_text() == "new"

    async def test_absolute_path_inside_is_recorded_relative(
        self, toolset: Toolset, root: Path
    ) -> None:
        """files_written holds the workspace-relative path even for an absolute one."""
        output = await call(toolset, "write_file", file_path=str(root / "x.txt"), content="")
        assert output.files_written == ("x.txt",)

    async def test_directory_target(self, toolset: Toolset, root: Path) -> None:
        """Writing over a directory is an error and records nothing."""
        (root / "sub").mkdir()
        output = await call(toolset, "write_file", file_path="sub", content="x")
        assert output == ToolOutput("sub is a directory; give a file path", True)


class TestEditFile:
    async def test_unique_replacement(self, toolset: Toolset, root: Path) -> None:
        """A unique old_string is replaced; the answer counts replacements."""
        (root / "f.py").write_text("a = 1\nb = 2\n")
        output = await call(
            toolset, "edit_file", file_path="f.py", old_string="b = 2", new_string="b = 3"
        )
        assert output == ToolOutput("Replaced 1 occurrence in f.py", files_written=("f.py",))
        assert (root / "f.py").read_text() == "a = 1\nb = 3\n"

    async def test_missing_old_string(self, toolset: Toolset, root: Path) -> None:
        """An old_string not in the file is an error asking for the exact text."""
        (root / "f.py").write_text("a = 1\n")
        output = await call(
            toolset, "edit_file", file_path="f.py", old_string="a=1", new_string="a = 2"
        )
        assert output == ToolOutput(
            "old_string not found in f.py; read the file and copy the exact text", True
        )

    async def test_ambiguous_old_string(self, toolset: Toolset, root: Path) -> None:
        """Several matches without replace_all is an error, and the file is left alone."""
        (root / "f.py").write_text("x = 0\nx = 0\nx = 0\n")
        output = await call(
            toolset, "edit_file", file_path="f.py", old_string="x = 0", new_string="x = 1"
        )
        assert output == ToolOutput(
            "old_string occurs 3 times in f.py; add surrounding lines to make it unique, "
            "or set replace_all",
            True,
        )
        assert (root / "f.py").read_text() == "x = 0\nx = 0\nx = 0\n"

    async def test_replace_all(self, toolset: Toolset, root: Path) -> None:
        """replace_all replaces every occurrence and says how many."""
        (root / "f.py").write_text("x = 0\nx = 0\n")
        output = await call(
            toolset,
            "edit_file",
            file_path="f.py",
            old_string="x = 0",
            new_string="x = 1",
            replace_all=True,
        )
        assert output.text == "Replaced 2 occurrences in f.py"
        assert (root / "f.py").read_text() == "x = 1\nx = 1\n"

    async def test_line_endings_are_kept(self, toolset: Toolset, root: Path) -> None:
        """An edit leaves the file's CRLF line endings as they were."""
        (root / "f.txt").write_bytes(b"one\r\ntwo\r\n")
        await call(toolset, "edit_file", file_path="f.txt", old_string="two", new_string="2")
        assert (root / "f.txt").read_bytes() == b"one\r\n2\r\n"

    async def test_missing_file(self, toolset: Toolset) -> None:
        """Editing a file that does not exist is an error."""
        output = await call(toolset, "edit_file", file_path="f", old_string="a", new_string="b")
        assert output == ToolOutput("File not found: f", True)


class TestShell:
    async def test_output_exit_code_and_duration(self, toolset: Toolset) -> None:
        """stdout, then stderr, then the exit code and duration; a failing exit is output."""
        output = await call(toolset, "shell", command="echo out; echo err >&2; exit 3")
        assert not output.is_error
        assert output.text.startswith("out\n[stderr]\nerr\n[exit code 3, ")
        assert output.text.endswith(" ms]")

    async def test_runs_bash_in_the_workspace(self, toolset: Toolset, root: Path) -> None:
        """The command runs under bash with the workspace root as its working directory."""
        output = await call(toolset, "shell", command='pwd; echo "${BASH_VERSION:+bash}"')
        assert output.text.split("\n")[:2] == [str(root.resolve()), "bash"]

    async def test_timeout_keeps_partial_output(self, toolset: Toolset) -> None:
        """A timeout is an error: the output so far, then the spec's timeout message."""
        output = await call(toolset, "shell", command="echo started; sleep 30", timeout_ms=300)
        assert output == ToolOutput(f"started\n{TIMEOUT_MESSAGE}", True)

    async def test_timeout_kills_the_whole_group(self, toolset: Toolset, root: Path) -> None:
        """A child that would outlive the shell dies with it when the command times out."""
        output = await call(
            toolset, "shell", command="sleep 30 & echo $! > pid; wait", timeout_ms=300
        )
        assert output.is_error
        pid = int((root / "pid").read_text())
        await wait_for_exit(pid)
        assert not is_running(pid)

    async def test_sigterm_is_followed_by_sigkill(self, toolset: Toolset, root: Path) -> None:
        """Processes that ignore SIGTERM are killed after the 2 s grace period."""
        started = time.monotonic()
        output = await call(
            toolset,
            "shell",
            command="trap '' TERM; sleep 30 & echo $! > pid; wait",
            timeout_ms=300,
        )
        assert output.text.endswith(TIMEOUT_MESSAGE)
        assert 2.0 <= time.monotonic() - started < 10
        pid = int((root / "pid").read_text())
        await wait_for_exit(pid)
        assert not is_running(pid)

    async def test_cancellation_kills_the_group(self, toolset: Toolset, root: Path) -> None:
        """Cancelling the call kills the command's whole process group."""
        os.mkfifo(root / "pid")
        async with anyio.create_task_group() as group:
            shell = ToolCall("call-1", "shell", {"command": "sleep 30 & echo $! > pid; wait"})
            group.start_soon(toolset.run, shell)
            pid = int(await read_fifo(root / "pid"))
            group.cancel_scope.cancel()
        await wait_for_exit(pid)
        assert not is_running(pid)

    async def test_leftover_background_process_is_killed(
        self, toolset: Toolset, root: Path
    ) -> None:
        """A background process the command leaves behind does not outlive the call."""
        output = await call(toolset, "shell", command="sleep 30 & echo $! > pid")
        assert not output.is_error
        pid = int((root / "pid").read_text())
        await wait_for_exit(pid)
        assert not is_running(pid)

    async def test_toolset_default_timeout(self, root: Path) -> None:
        """Without timeout_ms the Toolset's shell_timeout applies, as the schema tells."""
        toolset = Toolset(Workspace(root), shell_timeout=0.3)
        output = await call(toolset, "shell", command="sleep 30")
        assert output == ToolOutput(TIMEOUT_MESSAGE, True)
        (shell,) = [d for d in toolset.definitions() if d.name == "shell"]
        assert (
            "(default 300, at most 600000)"
            in shell.parameters["properties"]["timeout_ms"]["description"]
        )

    @pytest.mark.parametrize("seconds", [0, -1, 601])
    def test_toolset_timeout_out_of_range(self, root: Path, seconds: float) -> None:
        """A default shell timeout outside (0, 600] seconds is refused."""
        with pytest.raises(ValueError, match="shell_timeout"):
            Toolset(Workspace(root), shell_timeout=seconds)

    async def test_secrets_are_filtered_from_the_environment(
        self, toolset: Toolset, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Variables named like secrets are dropped; the others are passed on."""
        monkeypatch.setenv("FOO_API_KEY", "hunter2")
        monkeypatch.setenv("github_token", "hunter3")
        monkeypatch.setenv("ORCHESTRA_VISIBLE", "yes")
        output = await call(
            toolset,
            "shell",
            command='echo "${FOO_API_KEY:-unset} ${github_token:-unset} $ORCHESTRA_VISIBLE"',
        )
        assert output.text.startswith("unset unset yes\n")

    def test_filter_environment(self) -> None:
        """Each secret suffix is dropped, in any case; everything else is kept."""
        environ = {
            "A_API_KEY": "1",
            "b_secret": "2",
            "C_TOKEN": "3",
            "D_Password": "4",
            "E_CREDENTIAL": "5",
            "TOKEN": "6",
            "PATH": "/bin",
            "HOME": "/root",
            "TOKENIZER": "keep",
            "GOOGLE_APPLICATION_CREDENTIALS": "keep",
        }
        assert filter_environment(environ) == {
            "PATH": "/bin",
            "HOME": "/root",
            "TOKENIZER": "keep",
            "GOOGLE_APPLICATION_CREDENTIALS": "keep",
        }


class TestGrep:
    @pytest.fixture
    def tree(self, root: Path) -> None:
        (root / "src").mkdir()
        (root / "src/a.py").write_text("import os\nTODO: fix\n")
        (root / "src/b.txt").write_text("todo later\n")
        (root / "top.py").write_text("x = 1  # TODO\n")
        (root / ".git").mkdir()
        (root / ".git/config").write_text("TODO in git\n")
        (root / "blob.bin").write_bytes(b"TODO\0\0")

    @pytest.mark.usefixtures("tree")
    async def test_matching_lines(self, toolset: Toolset) -> None:
        """Matches come as 'file:line: text', files before subdirs; .git and binaries skipped."""
        output = await call(toolset, "grep", pattern="TODO")
        assert output == ToolOutput("top.py:1: x = 1  # TODO\nsrc/a.py:2: TODO: fix")

    @pytest.mark.usefixtures("tree")
    async def test_case_insensitive_with_path_and_glob_filter(self, toolset: Toolset) -> None:
        """case_insensitive, path and glob_filter narrow the search together."""
        output = await call(
            toolset, "grep", pattern="todo", path="src", glob_filter="*.txt", case_insensitive=True
        )
        assert output.text == "src/b.txt:1: todo later"

    @pytest.mark.usefixtures("tree")
    async def test_max_results(self, toolset: Toolset) -> None:
        """At max_results the search stops and says so."""
        output = await call(toolset, "grep", pattern="TODO", max_results=1)
        assert output.text == (
            "top.py:1: x = 1  # TODO\n"
            "[stopped after 1 matches; narrow the pattern or the path, or raise max_results]"
        )

    async def test_bad_regex(self, toolset: Toolset) -> None:
        """A pattern that does not compile is an error result."""
        output = await call(toolset, "grep", pattern="(unclosed")
        assert output.is_error
        assert output.text.startswith("Invalid regex '(unclosed': missing )")

    async def test_missing_path(self, toolset: Toolset) -> None:
        """A search path that does not exist is an error."""
        output = await call(toolset, "grep", pattern="x", path="nowhere")
        assert output == ToolOutput("Path not found: nowhere", True)

    async def test_no_matches(self, toolset: Toolset) -> None:
        """No match is an answer, not an error."""
        output = await call(toolset, "grep", pattern="absent")
        assert output == ToolOutput("No matches for 'absent' in .")


class TestGlob:
    async def test_newest_first(self, toolset: Toolset, root: Path) -> None:
        """Matches are workspace-relative and ordered by modification time, newest first."""
        (root / "pkg").mkdir()
        for age, name in enumerate(["pkg/new.py", "mid.py", "pkg/old.py"]):
            (root / name).write_text("")
            os.utime(root / name, (1_000_000 - age * 100, 1_000_000 - age * 100))
        (root / "notes.txt").write_text("")
        output = await call(toolset, "glob", pattern="**/*.py")
        assert output.text == "pkg/new.py\nmid.py\npkg/old.py"

    async def test_path_and_directories(self, toolset: Toolset, root: Path) -> None:
        """path is the base of the pattern; directories end in '/'."""
        (root / "pkg/sub").mkdir(parents=True)
        output = await call(toolset, "glob", pattern="*", path="pkg")
        assert output.text == "pkg/sub/"

    async def test_git_is_skipped_unless_asked_for(self, toolset: Toolset, root: Path) -> None:
        """.git contents are left out of a broad pattern but found when named."""
        (root / ".git").mkdir()
        (root / ".git/HEAD").write_text("ref\n")
        assert (await call(toolset, "glob", pattern="**/HEAD")).text.startswith("No paths")
        assert (await call(toolset, "glob", pattern=".git/*")).text == ".git/HEAD"

    async def test_bad_pattern(self, toolset: Toolset) -> None:
        """An absolute pattern is an error result explaining what to give instead."""
        output = await call(toolset, "glob", pattern="/etc/*")
        assert output.is_error
        assert output.text.startswith("Invalid glob pattern '/etc/*'")

    async def test_missing_path(self, toolset: Toolset) -> None:
        """A base path that does not exist is an error."""
        output = await call(toolset, "glob", pattern="*", path="nowhere")
        assert output == ToolOutput("Path not found: nowhere", True)


class TestTruncation:
    def test_head_tail_keeps_both_ends(self) -> None:
        """head_tail keeps max/2 characters from each end around the spec's warning."""
        assert truncate_chars("a" * 10 + "b" * 10 + "c" * 10, 20, "head_tail") == (
            "a" * 10 + "\n\n[WARNING: Tool output was truncated. 10 characters were removed "
            "from the middle. The full output is available in the event stream. If you need to "
            "see specific parts, re-run the tool with more targeted parameters.]\n\n" + "c" * 10
        )

    def test_tail_keeps_the_end(self) -> None:
        """tail keeps the last max characters behind the spec's warning."""
        assert truncate_chars("0123456789", 4, "tail") == (
            "[WARNING: Tool output was truncated. First 6 characters were removed. "
            "The full output is available in the event stream.]\n\n6789"
        )

    def test_within_limits_is_unchanged(self) -> None:
        """Text within both limits comes back as it is."""
        text = "short\ntext"
        assert truncate_output(text, OutputLimit(10, "tail", 2)) == text

    def test_line_truncation(self) -> None:
        """Lines beyond the limit are cut from the middle, with the count omitted."""
        text = "\n".join(str(n) for n in range(1, 11))
        assert truncate_lines(text, 4) == "1\n2\n[... 6 lines omitted ...]\n9\n10"

    def test_characters_are_cut_before_lines(self) -> None:
        """Character truncation runs first, so a single enormous line is still cut."""
        text = "x" * 1000 + "\n" + "\n".join(str(n) for n in range(300))
        limit = OutputLimit(200, "head_tail", 6)
        assert truncate_output(text, limit) == truncate_lines(
            truncate_chars(text, 200, "head_tail"), 6
        )
        assert truncate_output(text, limit) != truncate_chars(truncate_lines(text, 6), 200, "tail")
        assert "x" * 101 not in truncate_output(text, limit)

    def test_per_tool_limits(self) -> None:
        """Each tool's limit is the spec's."""
        assert dict(OUTPUT_LIMITS) == {
            "read_file": OutputLimit(50_000, "head_tail"),
            "write_file": OutputLimit(1_000, "tail"),
            "edit_file": OutputLimit(10_000, "tail"),
            "shell": OutputLimit(30_000, "head_tail", 256),
            "grep": OutputLimit(20_000, "tail", 200),
            "glob": OutputLimit(20_000, "tail", 500),
        }

    async def test_shell_output_is_cut_for_the_model_not_the_logs(self, toolset: Toolset) -> None:
        """A 40 000-character output is cut to 30 000 for the model; full_text keeps it all."""
        output = await call(toolset, "shell", command="head -c 40000 /dev/zero | tr '\\0' x")
        assert output.full_text.startswith("x" * 40_000 + "\n[exit code 0, ")
        removed = len(output.full_text) - 30_000
        assert f"{removed} characters were removed from the middle" in output.text
        assert output.text.startswith("x" * 15_000 + "\n\n[WARNING")

    async def test_shell_lines_are_cut_to_256(self, toolset: Toolset) -> None:
        """Shell output keeps its first 128 and last 128 lines."""
        output = await call(toolset, "shell", command="seq 1 1000")
        lines = output.text.split("\n")
        assert lines[126:130] == ["127", "128", "[... 745 lines omitted ...]", "874"]
        assert len(lines) == 257
        assert output.full_text.count("\n") == 1000

    async def test_grep_keeps_the_tail(self, toolset: Toolset, root: Path) -> None:
        """grep output beyond 20 000 characters loses its beginning, with the tail warning."""
        (root / "big.txt").write_text(("y" * 99 + "\n") * 300)
        output = await call(toolset, "grep", pattern="y", max_results=1000)
        assert output.text.startswith("[WARNING: Tool output was truncated. First ")
        assert output.text.endswith("big.txt:300: " + "y" * 99)

    async def test_read_file_keeps_head_and_tail(self, toolset: Toolset, root: Path) -> None:
        """read_file output beyond 50 000 characters loses its middle."""
        (root / "wide.txt").write_text("z" * 60_000 + "\nend\n")
        output = await call(toolset, "read_file", file_path="wide.txt")
        assert "characters were removed from the middle" in output.text
        assert output.text.endswith("2 | end")


class TestDispatch:
    def test_definitions(self, toolset: Toolset) -> None:
        """The six standard tools are offered, each with a closed object schema."""
        definitions = toolset.definitions()
        assert sorted(d.name for d in definitions) == [
            "edit_file",
            "glob",
            "grep",
            "read_file",
            "shell",
            "write_file",
        ]
        assert all(d.parameters["additionalProperties"] is False for d in definitions)

    async def test_unknown_tool(self, toolset: Toolset) -> None:
        """A tool that does not exist is an error result naming it."""
        output = await call(toolset, "apply_patch", patch="")
        assert output.is_error
        assert output.text.startswith("Unknown tool: apply_patch")

    async def test_arguments_as_json_text(self, toolset: Toolset, root: Path) -> None:
        """Arguments still in JSON text are parsed."""
        (root / "f.txt").write_text("hi\n")
        output = await toolset.run(ToolCall("c", "read_file", '{"file_path": "f.txt"}'))
        assert output == ToolOutput("1 | hi")

    @pytest.mark.parametrize(
        ("arguments", "problem"),
        [
            ("{not json", "not valid JSON"),
            ("[1, 2]", "expected a JSON object, got [1, 2]"),
            ({}, "missing required field 'file_path'"),
            ({"file_path": "f", "colour": "red"}, "unexpected field 'colour'"),
            ({"file_path": 3}, "'file_path' must be a string, got 3"),
            ({"file_path": "f", "limit": "10"}, "'limit' must be an integer, got \"10\""),
            ({"file_path": "f", "limit": True}, "'limit' must be an integer, got true"),
            ({"file_path": "f", "offset": 0}, "'offset' must be at least 1, got 0"),
        ],
    )
    async def test_invalid_arguments(
        self, toolset: Toolset, arguments: dict[str, Any] | str, problem: str
    ) -> None:
        """Arguments that do not fit the schema are an error result saying what is wrong."""
        output = await toolset.run(ToolCall("c", "read_file", arguments))
        assert output.is_error
        assert output.text.startswith("Invalid arguments for tool read_file: ")
        assert problem in output.text

    async def test_boolean_must_be_a_boolean(self, toolset: Toolset) -> None:
        """A boolean field given as 1 is refused."""
        output = await call(
            toolset, "edit_file", file_path="f", old_string="a", new_string="b", replace_all=1
        )
        assert output == ToolOutput(
            "Invalid arguments for tool edit_file: 'replace_all' must be a boolean, got 1", True
        )

    async def test_null_optional_field_counts_as_absent(self, toolset: Toolset, root: Path) -> None:
        """An optional field sent as null takes its default."""
        (root / "f.txt").write_text("hi\n")
        output = await call(toolset, "read_file", file_path="f.txt", offset=None)
        assert output == ToolOutput("1 | hi")

    async def test_executor_exception(self, tmp_path: Path) -> None:
        """An exception inside a tool becomes an error result naming the tool."""
        toolset = Toolset(Workspace(tmp_path / "deleted"))
        output = await call(toolset, "shell", command="true")
        assert output.is_error
        assert output.text.startswith("Tool error (shell): FileNotFoundError: ")

    def test_as_result(self) -> None:
        """An output becomes the ToolResult for its call, with the truncated text."""
        output = ToolOutput("short", True, full_text="long version")
        assert output.as_result("call-9") == ToolResult("call-9", "short", True)
