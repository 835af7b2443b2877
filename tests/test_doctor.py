"""`orchestra doctor` and ``orchestra.doctor.check``: the store (embedded and CXDB), the
config file, provider keys, git and Python, each with a fix for every problem."""

from __future__ import annotations

import json
import socket
import sqlite3
from pathlib import Path

import anyio
import anyio.abc
import pytest
from anyio.abc import SocketAttribute
from click.testing import CliRunner

from orchestra.doctor import Finding, check
from orchestra.store.cxdb import protocol as p
from orchestra.store.cxdb.bundle import BUNDLE_ID
from orchestra.store.cxdb.fake import FakeCxdb
from orchestra.store.embedded import EmbeddedStore
from orchestra_cli.main import cli

ANTHROPIC_KEY = "sk-ant-Qz7vR2mLp9XwK4tNb8"
OPENAI_KEY = "sk-proj-Hc3Jd5Fg8Ks1Lm6Pq0"


@pytest.fixture(autouse=True)
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test in a fresh working directory, with no store or provider key configured."""
    monkeypatch.chdir(tmp_path)
    for name in ("CXDB_URL", "ANTHROPIC_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def unreachable_url() -> str:
    return f"cxdb://127.0.0.1:{closed_port()}?http=127.0.0.1:{closed_port()}"


def by_check(findings: list[Finding]) -> dict[str, Finding]:
    return {f.check: f for f in findings}


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["doctor", *args], catch_exceptions=False)
    return result.exit_code, result.stdout + result.stderr


def no_part_of(secret: str, text: str) -> bool:
    """Whether ``text`` holds no six characters in a row of ``secret``."""
    return all(secret[i : i + 6] not in text for i in range(len(secret) - 5))


class TestEmbeddedStore:
    async def test_missing_state_file_is_fine(self, here: Path) -> None:
        """No state file yet is not a problem: the first run creates it and its directory."""
        found = by_check(await check())
        assert found["store"].status == "ok"
        assert "the default" in found["store"].detail
        assert found["state file"].status == "ok"
        assert "does not exist yet" in found["state file"].detail
        assert found["state directory"].status == "ok"
        assert f"will be created in {here}" in found["state directory"].detail
        assert not (here / ".orchestra").exists()

    async def test_existing_state_is_recognised_with_its_sessions(self, here: Path) -> None:
        """An Orchestra state file is reported with its number of sessions."""
        store = await EmbeddedStore.open(here / "state.db")
        await store.create_context()
        await store.close()
        found = by_check(await check("state.db"))
        assert found["store"].detail.endswith("(from --store)")
        assert found["state file"] == Finding(
            "state file", "ok", "state.db is Orchestra state (1 session)"
        )
        assert found["state directory"].detail == f"{here} is writable"

    async def test_foreign_database_fails_and_is_left_as_it_was(self, here: Path) -> None:
        """An SQLite file that is not Orchestra's fails with a fix, and doctor does not
        change it (no WAL switch, no tables added)."""
        with sqlite3.connect(here / "other.db") as db:
            db.execute("CREATE TABLE invoices (id INTEGER)")
        db.close()
        before = (here / "other.db").read_bytes()
        found = by_check(await check("other.db"))
        assert found["state file"].status == "fail"
        assert "not Orchestra's state (tables: invoices)" in found["state file"].detail
        assert "--store" in found["state file"].fix
        assert (here / "other.db").read_bytes() == before

    async def test_file_that_is_not_sqlite_fails(self, here: Path) -> None:
        """A file of another kind at the store path is named as not an SQLite database."""
        (here / "notes.db").write_text("these are notes, not a database\n" * 40)
        found = by_check(await check("notes.db"))
        assert found["state file"].status == "fail"
        assert "not an SQLite database" in found["state file"].detail
        assert "move it aside" in found["state file"].fix

    async def test_other_state_version_fails(self, here: Path) -> None:
        """State written by another Orchestra version is refused with the versions named."""
        store = await EmbeddedStore.open(here / "state.db")
        await store.close()
        with sqlite3.connect(here / "state.db") as db:
            db.execute("UPDATE meta SET value = '9' WHERE key = 'version'")
        db.close()
        found = by_check(await check("state.db"))
        assert found["state file"].status == "fail"
        assert "version 9" in found["state file"].detail
        assert "reads version 1" in found["state file"].detail

    async def test_directory_that_cannot_be_created_fails(self, here: Path) -> None:
        """A file where the store's directory must go is a failure with a fix."""
        (here / "blocker").write_text("")
        found = by_check(await check("blocker/state.db"))
        assert found["state directory"].status == "fail"
        assert f"{here / 'blocker'} is a file" in found["state directory"].detail
        assert found["state directory"].fix

    async def test_store_choice_names_where_it_came_from(
        self, here: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The store line says which of --store, CXDB_URL, orchestra.yaml or the default
        chose it."""
        (here / "orchestra.yaml").write_text("cxdb:\n  url: cxdb://127.0.0.1:1\n")
        monkeypatch.setattr("orchestra.doctor.TIMEOUT", 0.5)
        assert f"cxdb.url in {here / 'orchestra.yaml'}" in by_check(await check())["store"].detail
        monkeypatch.setenv("CXDB_URL", "elsewhere.db")
        assert "from the CXDB_URL environment variable" in by_check(await check())["store"].detail


class TestCxdbStore:
    async def test_healthy_server_is_all_ok_and_gets_the_bundle(
        self, cxdb_server: FakeCxdb
    ) -> None:
        """Against a healthy server every store check passes; a missing type bundle is
        published."""
        found = by_check(await check(cxdb_server.url))
        for name in ("store", "cxdb binary protocol", "cxdb http api", "cxdb type bundle"):
            assert found[name].status == "ok", found[name]
        assert "protocol version 1" in found["cxdb binary protocol"].detail
        assert found["cxdb http api"].detail.endswith("/healthz answers 200")
        assert "published it now" in found["cxdb type bundle"].detail
        assert BUNDLE_ID in cxdb_server.bundles

    async def test_registered_bundle_is_reported_as_present(self, cxdb_server: FakeCxdb) -> None:
        """Once the bundle is on the server, doctor says so instead of publishing again."""
        await check(cxdb_server.url)
        found = by_check(await check(cxdb_server.url))
        assert found["cxdb type bundle"] == Finding(
            "cxdb type bundle", "ok", f"{BUNDLE_ID} is registered"
        )

    async def test_unreachable_server_fails_with_a_fix(self) -> None:
        """A server that is not there fails both ports, each with how to fix it; the bundle
        is left unchecked."""
        found = by_check(await check(unreachable_url()))
        assert found["store"].status == "ok"
        for name in ("cxdb binary protocol", "cxdb http api"):
            assert found[name].status == "fail"
            assert "does not answer" in found[name].detail
        assert "start the CXDB server" in found["cxdb binary protocol"].fix
        assert "?http=HOST:PORT" in found["cxdb http api"].fix
        assert found["cxdb type bundle"].status == "warn"
        assert "not checked" in found["cxdb type bundle"].detail

    async def test_other_protocol_version_fails(self) -> None:
        """A server answering HELLO with a protocol version other than 1 is a failure."""

        async def answer(stream: anyio.abc.SocketStream) -> None:
            async with stream:
                reader, frames = p.FrameReader(), []
                while not frames:
                    frames = reader.feed(await stream.receive())
                reply = p.encode_hello_reply(1, protocol_version=2)
                await stream.send(p.frame(p.MsgType.HELLO, frames[0].req_id, reply))

        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(SocketAttribute.local_port)
        async with listener, anyio.create_task_group() as group:
            group.start_soon(listener.serve, answer)
            found = by_check(await check(f"cxdb://127.0.0.1:{port}?http=127.0.0.1:{closed_port()}"))
            group.cancel_scope.cancel()
        assert found["cxdb binary protocol"].status == "fail"
        assert "protocol version 2" in found["cxdb binary protocol"].detail

    async def test_malformed_url_fails_with_the_form_to_use(self) -> None:
        """A cxdb:// URL that does not parse says what is wrong and how to write it."""
        found = by_check(await check("cxdb://db:port"))
        assert found["store"].status == "fail"
        assert "port is not a number" in found["store"].detail
        assert "cxdb://HOST:9009?http=HOST:9010" in found["store"].fix

    async def test_http_url_in_config_fails_with_the_form_to_use(self, here: Path) -> None:
        """cxdb.url written as CXDB's HTTP address (as older configs did) fails, naming the
        file and the URL form Orchestra needs."""
        (here / "orchestra.yaml").write_text("cxdb:\n  url: http://localhost:9010\n")
        found = by_check(await check())
        assert found["store"].status == "fail"
        assert "'http://localhost:9010'" in found["store"].detail
        assert "orchestra.yaml" in found["store"].detail
        assert "cxdb://HOST:9009?http=HOST:9010" in found["store"].fix


class TestConfig:
    async def test_no_config_means_defaults(self) -> None:
        """Without an orchestra.yaml anywhere up the tree, doctor says defaults are used."""
        found = by_check(await check())["orchestra.yaml"]
        assert found.status == "ok"
        assert "defaults are used" in found.detail

    async def test_nearest_config_up_the_tree_is_read(
        self, here: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The orchestra.yaml of a parent directory is found and its keys listed."""
        (here / "orchestra.yaml").write_text("backend: simulation\nagents: {}\n")
        nested = here / "pipelines" / "review"
        nested.mkdir(parents=True)
        monkeypatch.chdir(nested)
        found = by_check(await check())["orchestra.yaml"]
        assert found == Finding(
            "orchestra.yaml",
            "ok",
            f"{here / 'orchestra.yaml'} is valid (backend simulation; agents: none)",
        )

    async def test_syntax_error_is_reported_with_file_and_line(self, here: Path) -> None:
        """A YAML syntax error names the file and line, and the store cannot be chosen."""
        (here / "orchestra.yaml").write_text("backend: simulation\nproviders:\n  default: [\n")
        found = by_check(await check())
        config = found["orchestra.yaml"]
        assert config.status == "fail"
        assert config.detail.startswith(f"{here / 'orchestra.yaml'}:4:")
        assert "line 4" in config.fix
        assert found["store"].status == "fail"
        assert "orchestra.yaml does not parse" in found["store"].detail

    async def test_top_level_that_is_not_a_map_fails(self, here: Path) -> None:
        """A config whose top level is a list is a failure with the expected shape as fix."""
        (here / "orchestra.yaml").write_text("- backend\n- simulation\n")
        found = by_check(await check())["orchestra.yaml"]
        assert found.status == "fail"
        assert "expected a map of settings" in found.detail
        assert found.detail.endswith("got a list")
        assert str(here / "orchestra.yaml") in found.fix

    async def test_mistakes_a_run_would_stop_on_are_reported(self, here: Path) -> None:
        """doctor reads orchestra.yaml as a run does: an unknown tier is a failure naming
        the file, line and key."""
        (here / "orchestra.yaml").write_text(
            "agents:\n  critic:\n    model: smrt\n", encoding="utf-8"
        )
        found = by_check(await check())["orchestra.yaml"]
        assert found.status == "fail"
        assert "orchestra.yaml:3: agents.critic.model: unknown tier 'smrt'" in found.detail
        assert found.fix.startswith("fix agents.critic.model at line 3")

    def test_syntax_error_exits_1_without_quoting_the_file(self, here: Path) -> None:
        """The command fails on a broken config, and does not print the broken line: it may
        hold a secret."""
        secret = "sk-ant-inline-Vb6Nc2Xz9Lk4"
        (here / "orchestra.yaml").write_text(
            f'providers:\n  anthropic:\n    api_key: "{secret}\n    models: {{}}\n'
        )
        code, out = invoke()
        assert code == 1
        assert "✗ orchestra.yaml:" in out
        assert f"{here / 'orchestra.yaml'}:" in out
        assert no_part_of(secret, out)


class TestProviderKeys:
    @pytest.fixture
    def keys(self, here: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Anthropic's key in the environment, OpenAI's in .env."""
        monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
        (here / ".env").write_text(f"# provider keys\nexport OPENAI_API_KEY='{OPENAI_KEY}'\n")

    async def test_keys_are_reported_as_set_with_their_source(self, keys: None) -> None:
        """A key in the environment and one in .env are both set, each saying where."""
        found = by_check(await check())
        assert found["ANTHROPIC_API_KEY"] == Finding(
            "ANTHROPIC_API_KEY", "ok", "set in the environment"
        )
        assert found["OPENAI_API_KEY"] == Finding("OPENAI_API_KEY", "ok", "set in .env")

    @pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
    def test_no_part_of_a_key_is_ever_printed(self, keys: None, as_json: bool) -> None:
        """Neither key's value, nor any six characters of it, appears in the output."""
        code, out = invoke(*(["--json"] if as_json else []))
        assert code == 0
        assert "set in .env" in out
        assert no_part_of(ANTHROPIC_KEY, out)
        assert no_part_of(OPENAI_KEY, out)

    async def test_no_key_at_all_warns_with_a_fix(self) -> None:
        """With no provider key, both are warnings saying how to set them."""
        found = by_check(await check())
        for name in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY"):
            assert found[name].status == "warn"
            assert f"export {name}=" in found[name].fix
            assert "simulation" in found[name].fix

    async def test_one_key_is_enough(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """With one provider's key set, the other provider's missing key is no warning."""
        monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
        found = by_check(await check())["ANTHROPIC_API_KEY"]
        assert found == Finding(
            "ANTHROPIC_API_KEY", "ok", "not set (needed only for Anthropic (Claude) models)"
        )

    async def test_comments_and_empty_values_in_dotenv_do_not_count(self, here: Path) -> None:
        """A commented-out key or one with an empty value in .env is not set."""
        (here / ".env").write_text("# OPENAI_API_KEY=sk-old\nANTHROPIC_API_KEY=\n")
        found = by_check(await check())
        assert found["OPENAI_API_KEY"].status == "warn"
        assert found["ANTHROPIC_API_KEY"].status == "warn"


class TestGitAndPython:
    @pytest.fixture
    def no_git(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A PATH with nothing on it."""
        empty = tmp_path / "empty-bin"
        empty.mkdir()
        monkeypatch.setenv("PATH", str(empty))

    async def test_git_version_is_shown(self) -> None:
        """With git on PATH, its version is reported."""
        found = by_check(await check())["git"]
        assert found.status == "ok"
        assert found.detail.startswith("git version ")

    async def test_missing_git_is_a_warning_with_a_fix(self, no_git: None) -> None:
        """Without git, doctor warns (runs do not need it) and says how to install it."""
        found = by_check(await check())["git"]
        assert found.status == "warn"
        assert "not on PATH" in found.detail
        assert "install git" in found.fix

    async def test_python_version_is_checked(self) -> None:
        """The running Python is 3.11 or newer and is reported."""
        found = by_check(await check())["python"]
        assert found.status == "ok"
        assert found.detail.startswith("Python 3.")


class TestCommand:
    def test_healthy_setup_prints_only_checkmarks_and_exits_0(
        self, cxdb_server: FakeCxdb, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A healthy fake CXDB, a key and git: every line is a ✓ and the exit code is 0."""
        monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
        code, out = invoke("--store", cxdb_server.url)
        assert code == 0
        *lines, summary = out.splitlines()
        assert all(line.startswith("✓ ") for line in lines), out
        assert lines[0] == f"✓ store: CXDB server {cxdb_server.url} (from --store)"
        assert summary == "everything is ready"

    def test_warnings_alone_exit_0(self) -> None:
        """Missing provider keys are warnings (!), which do not fail the command."""
        code, out = invoke()
        assert code == 0
        assert "! ANTHROPIC_API_KEY: not set  → export ANTHROPIC_API_KEY=" in out
        assert out.splitlines()[-1] == "2 warnings"

    def test_unreachable_store_exits_1_with_the_fix_on_the_line(self) -> None:
        """A failed check is a ✗ line ending with its fix, and the exit code is 1."""
        code, out = invoke("--store", unreachable_url())
        assert code == 1
        [line] = [line for line in out.splitlines() if line.startswith("✗ cxdb binary")]
        assert "does not answer" in line
        assert "→ start the CXDB server" in line
        assert out.splitlines()[-1] == "2 failed, 3 warnings"

    def test_json_is_a_list_of_checks(self, cxdb_server: FakeCxdb) -> None:
        """--json prints a list of {check, status, detail, fix}, in the text's order."""
        code, out = invoke("--store", cxdb_server.url, "--json")
        assert code == 0
        records = json.loads(out)
        assert all(set(r) == {"check", "status", "detail", "fix"} for r in records)
        assert all(r["status"] in ("ok", "warn", "fail") for r in records)
        assert [r["check"] for r in records][:4] == [
            "store",
            "cxdb binary protocol",
            "cxdb http api",
            "cxdb type bundle",
        ]
        assert all(r["fix"] for r in records if r["status"] != "ok")

    def test_json_exit_code_follows_failures(self) -> None:
        """--json exits 1 when a check failed, like the text output."""
        code, out = invoke("--store", unreachable_url(), "--json")
        assert code == 1
        assert {r["status"] for r in json.loads(out)} >= {"fail"}

    def test_group_help_lists_doctor(self) -> None:
        """`orchestra --help` lists the command."""
        result = CliRunner().invoke(cli, ["--help"])
        assert "doctor" in result.stdout


class TestWorkspaceRepositories:
    async def test_each_repository_is_checked(self, here: Path) -> None:
        """A repository sessions can start from is ok with its HEAD; a directory that is
        not a repository fails with what to do."""
        from tests.workspaces import make_repo

        make_repo(here / "app", {"a.txt": "a\n"})
        (here / "plain").mkdir()
        (here / "orchestra.yaml").write_text(
            "workspace:\n  repos:\n    app:\n      path: app\n    plain:\n      path: plain\n"
        )
        found = by_check(await check())
        assert found["workspace repo app"].status == "ok"
        assert "sessions start from its branch main" in found["workspace repo app"].detail
        plain = found["workspace repo plain"]
        assert plain.status == "fail"
        assert "is not a git repository" in plain.detail
        assert plain.fix == "fix workspace.repos.plain"
