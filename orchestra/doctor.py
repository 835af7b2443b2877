"""Is this machine ready to run pipelines? ``orchestra doctor`` as a library call.

``await check()`` looks at the store a command would use (and where that choice came from),
the nearest ``orchestra.yaml``, the provider keys, git and Python, and returns one
:class:`Finding` per thing it looked at: ``ok``, ``warn`` (runs work, something is missing
or odd) or ``fail`` (runs will not work until it is fixed), each problem with its fix.

Checks only look: nothing is created, apart from publishing Orchestra's type bundle to a
CXDB server that lacks it (what any run would do). A provider key's value is never read
into a finding, only whether it is set.
"""

from __future__ import annotations

import os
import platform
import shutil
import sqlite3
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.to_thread
import attrs
import httpx

from orchestra.errors import ConfigError, StoreError
from orchestra.store.cxdb import protocol as p
from orchestra.store.cxdb.bundle import BUNDLE_ID
from orchestra.store.cxdb.client import CxdbClient
from orchestra.store.cxdb.store import CxdbAddress, CxdbStore, parse_cxdb_url
from orchestra.store.embedded import SCHEMA_ID, SCHEMA_VERSION
from orchestra.store.location import describe_store, is_cxdb, resolve_store

if TYPE_CHECKING:
    pass

__all__ = ["PROVIDER_KEYS", "Finding", "Status", "check"]

Status = Literal["ok", "warn", "fail"]

#: the environment variables holding provider keys, and the models each one is for
PROVIDER_KEYS: Mapping[str, str] = {
    "ANTHROPIC_API_KEY": "Anthropic (Claude) models",
    "OPENAI_API_KEY": "OpenAI models",
}

#: seconds a network check waits for an answer: long enough for a slow link, short enough
#: that doctor answers quickly when a server is down
TIMEOUT = 5.0

#: the oldest Python Orchestra runs on (pyproject.toml's requires-python)
MINIMUM_PYTHON = (3, 11)

_URL_FORM = "cxdb://HOST:9009?http=HOST:9010 (the binary port, then the HTTP API's address)"


@attrs.frozen
class Finding:
    """What one check found. ``fix`` says what to do, and is set for every problem."""

    check: str
    status: Status
    detail: str
    fix: str = ""


def _ok(check: str, detail: str) -> Finding:
    return Finding(check, "ok", detail)


async def check(store: str | os.PathLike[str] | None = None) -> list[Finding]:
    """Check the setup in the working directory; ``store`` is as ``--store`` (a path or a
    ``cxdb://`` URL; None: ``CXDB_URL``, then ``cxdb.url`` in ``orchestra.yaml``, then the
    default path). The findings come in a fixed order: store, config, workspace
    repositories, keys, git, Python."""
    cwd = Path.cwd()
    config = await anyio.to_thread.run_sync(_config_finding, cwd)
    findings = await _store_findings(store, cwd, config)
    findings.append(config)
    findings.extend(await anyio.to_thread.run_sync(_repo_findings, cwd))
    findings.extend(await anyio.to_thread.run_sync(_key_findings, cwd))
    findings.append(await _git_finding())
    findings.append(_python_finding())
    return findings


# store ---------------------------------------------------------------------------------------


async def _store_findings(
    spec: str | os.PathLike[str] | None, cwd: Path, config: Finding
) -> list[Finding]:
    try:
        target = resolve_store(spec, cwd)
        source = describe_store(spec, cwd)
    except StoreError as err:
        if config.status == "fail":
            # The error quotes the file, which may hold secrets; the config finding reports
            # where the syntax is wrong without quoting it.
            detail = "cannot tell which store to use: orchestra.yaml does not parse (see below)"
        else:
            detail = str(err).splitlines()[0]
        fix = "fix orchestra.yaml, or name the store with --store or CXDB_URL"
        return [Finding("store", "fail", detail, fix)]
    chosen = (
        "the default: no --store, CXDB_URL or cxdb.url in orchestra.yaml"
        if source == "the default"
        else f"from {source}"
    )
    if is_cxdb(target):
        try:
            address = parse_cxdb_url(target)
        except StoreError as err:
            return [Finding("store", "fail", str(err), f"write the URL as {_URL_FORM}")]
        return [_ok("store", f"CXDB server {target} ({chosen})"), *await _cxdb_findings(address)]
    if "://" in target:
        return [
            Finding(
                "store",
                "fail",
                f"'{target}' ({chosen}) is neither a path nor a cxdb:// URL",
                f"for a CXDB server write {_URL_FORM}; for the embedded store, a file path",
            )
        ]
    path = Path(target)
    return [
        _ok("store", f"embedded SQLite store {target} ({chosen})"),
        *await anyio.to_thread.run_sync(_embedded_findings, path),
    ]


def _embedded_findings(path: Path) -> list[Finding]:
    return [_state_file_finding(path), _state_directory_finding(path)]


def _state_file_finding(path: Path) -> Finding:
    name = "state file"
    elsewhere = "or point --store at another path"
    if not path.exists():
        return _ok(name, f"{path} does not exist yet; the first run creates it")
    if path.is_dir():
        return Finding(name, "fail", f"{path} is a directory", f"remove it, {elsewhere}")
    try:
        tables, marker, sessions = _read_state(path)
    except sqlite3.OperationalError as err:
        return Finding(
            name, "fail", f"{path}: cannot read it ({err})", f"check its permissions, {elsewhere}"
        )
    except (sqlite3.DatabaseError, UnicodeDecodeError) as err:
        return Finding(
            name,
            "fail",
            f"{path} is not an SQLite database ({err})",
            f"move it aside, {elsewhere}",
        )
    if not tables:
        return _ok(name, f"{path} is empty; the first run sets it up")
    if marker.get("schema") != SCHEMA_ID:
        return Finding(
            name,
            "fail",
            f"{path} is an SQLite database but not Orchestra's state "
            f"(tables: {', '.join(sorted(tables))})",
            f"move it aside, {elsewhere}",
        )
    if marker.get("version") != SCHEMA_VERSION:
        return Finding(
            name,
            "fail",
            f"{path} holds Orchestra state version {marker.get('version')}; this Orchestra "
            f"reads version {SCHEMA_VERSION}",
            f"use the Orchestra release that wrote it, {elsewhere}",
        )
    if not os.access(path, os.W_OK):
        return Finding(
            name,
            "fail",
            f"{path} is Orchestra state, but read-only",
            f"make it writable (chmod u+w {path}), {elsewhere}",
        )
    noun = "session" if sessions == 1 else "sessions"
    return _ok(name, f"{path} is Orchestra state ({sessions} {noun})")


def _read_state(path: Path) -> tuple[set[str], dict[str, Any], int]:
    """The file's tables, its ``meta`` rows and its number of sessions, read without
    writing: a file that is not Orchestra's must come out of doctor as it went in."""
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=TIMEOUT)
    try:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        marker: dict[str, Any] = {}
        if "meta" in tables:
            marker = dict(db.execute("SELECT key, value FROM meta").fetchall())
        sessions = 0
        if marker.get("schema") == SCHEMA_ID and "contexts" in tables:
            sessions = int(db.execute("SELECT count(*) FROM contexts").fetchone()[0])
        return tables, marker, sessions
    finally:
        db.close()


def _state_directory_finding(path: Path) -> Finding:
    name = "state directory"
    directory = path.resolve().parent
    existing = directory
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return Finding(
            name,
            "fail",
            f"{existing} is a file, so {directory} cannot be created",
            "move the file aside, or point --store at another path",
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        return Finding(
            name,
            "fail",
            f"{existing} is not writable",
            f"make it writable (chmod u+w {existing}), or point --store at another path",
        )
    if existing == directory:
        return _ok(name, f"{directory} is writable")
    return _ok(name, f"{directory} does not exist yet; it will be created in {existing}")


async def _cxdb_findings(address: CxdbAddress) -> list[Finding]:
    findings = [await _hello_finding(address)]
    # The client is never connected: the store object is only here to publish the bundle.
    http = httpx.AsyncClient(base_url=address.http_base, timeout=TIMEOUT)
    store = CxdbStore(address, CxdbClient(address.host, address.port), http)
    try:
        health = await _health_finding(address, http)
        findings.append(health)
        if health.status == "ok":
            findings.append(await _bundle_finding(store, http))
        else:
            findings.append(
                Finding(
                    "cxdb type bundle",
                    "warn",
                    "not checked: CXDB's HTTP API does not answer",
                    "fix the HTTP API first (above)",
                )
            )
    finally:
        await store.close()
    return findings


async def _hello_finding(address: CxdbAddress) -> Finding:
    name = "cxdb binary protocol"
    where = f"{address.host}:{address.port}"
    try:
        with anyio.fail_after(TIMEOUT):
            stream = await anyio.connect_tcp(address.host, address.port)
    except (OSError, TimeoutError) as err:
        return Finding(
            name,
            "fail",
            f"{where} does not answer ({_reason(err)})",
            "start the CXDB server, or point --store, CXDB_URL or cxdb.url at the host and "
            "binary port (9009 by default) where it runs",
        )
    async with stream:
        try:
            with anyio.fail_after(TIMEOUT):
                await stream.send(p.frame(p.MsgType.HELLO, 1, p.encode_hello("orchestra-doctor")))
                reader = p.FrameReader()
                frames: list[p.Frame] = []
                while not frames:
                    frames = reader.feed(await stream.receive())
            if frames[0].msg_type != p.MsgType.HELLO:
                raise p.ProtocolError("HELLO reply", f"message type {frames[0].msg_type}")
            hello = p.decode_hello_reply(frames[0].payload)
        except (
            OSError,
            TimeoutError,
            anyio.EndOfStream,
            anyio.BrokenResourceError,
            p.ProtocolError,
        ) as err:
            return Finding(
                name,
                "fail",
                f"{where} accepts connections but does not answer HELLO ({_reason(err)})",
                "check that this is CXDB's binary port (9009 by default; the HTTP API is "
                "another port, given as ?http=HOST:PORT)",
            )
    if hello.protocol_version != 1:
        return Finding(
            name,
            "fail",
            f"{where} speaks CXDB protocol version {hello.protocol_version}; Orchestra speaks 1",
            "run a CXDB server release that speaks protocol version 1",
        )
    return _ok(name, f"{where} answers HELLO (protocol version 1)")


async def _health_finding(address: CxdbAddress, http: httpx.AsyncClient) -> Finding:
    name = "cxdb http api"
    url = f"{address.http_base}/healthz"
    fix = (
        "start CXDB's HTTP API, or give its address in the store URL as "
        "?http=HOST:PORT (9010 by default)"
    )
    try:
        response = await http.get("/healthz")
    except httpx.HTTPError as err:
        return Finding(name, "fail", f"{url} does not answer ({_reason(err)})", fix)
    if response.status_code != 200:
        return Finding(name, "fail", f"{url} answered {response.status_code}", fix)
    return _ok(name, f"{url} answers 200")


async def _bundle_finding(store: CxdbStore, http: httpx.AsyncClient) -> Finding:
    name = "cxdb type bundle"
    fix = (
        "runs work without it, but CXDB's UI shows Orchestra's turns unrendered; "
        f"check the server's registry (PUT /v1/registry/bundles/{BUNDLE_ID})"
    )
    try:
        response = await http.get(f"/v1/registry/bundles/{BUNDLE_ID}")
    except httpx.HTTPError as err:
        return Finding(name, "warn", f"cannot read the registry ({_reason(err)})", fix)
    if response.status_code == 200:
        return _ok(name, f"{BUNDLE_ID} is registered")
    if response.status_code != 404:
        return Finding(
            name,
            "warn",
            f"GET /v1/registry/bundles/{BUNDLE_ID} answered {response.status_code}",
            fix,
        )
    await store.publish_bundle()
    if store.bundle_problem:
        return Finding(name, "warn", store.bundle_problem, fix)
    return _ok(name, f"{BUNDLE_ID} was not registered; published it now")


def _reason(err: BaseException) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__


# config --------------------------------------------------------------------------------------


def _config_finding(cwd: Path) -> Finding:
    """The nearest orchestra.yaml, read the way a run reads it: every mistake a run would
    stop on (syntax, unknown keys and tiers, missing prompt layer files) is reported here,
    by file, line and key, never quoting the file."""
    from orchestra.config.load import find_config, load_config

    name = "orchestra.yaml"
    path = find_config(cwd)
    if path is None:
        return _ok(name, "none here or in a parent directory; defaults are used")
    try:
        config = load_config(path)
    except ConfigError as err:
        where = f" at line {err.line}" if err.line is not None else ""
        what = err.key or "the file"
        return Finding(name, "fail", str(err), f"fix {what}{where} in {path}")
    agents = ", ".join(sorted(config.agents)) or "none"
    return _ok(name, f"{path} is valid (backend {config.backend}; agents: {agents})")


def _repo_findings(cwd: Path) -> list[Finding]:
    """Each repository of ``workspace.repos``: can a session start from it?"""
    from orchestra.config.load import find_config, load_config

    path = find_config(cwd)
    if path is None:
        return []
    try:
        repos = load_config(path).workspace.repos
    except ConfigError:
        return []  # the config finding says what is wrong
    from orchestra.errors import RepositoryError
    from orchestra.workspace import git

    findings = []
    for name, repo in repos.items():
        check = f"workspace repo {name}"
        if not repo.path.exists():
            findings.append(_ok(check, f"{repo.path} will be cloned from {repo.remote} first"))
            continue
        try:
            with git.open_repository(name, repo.path) as handle:
                git.start_commit(name, handle)
                head = git.describe_head(handle)
        except RepositoryError as err:
            findings.append(Finding(check, "fail", err.problem, f"fix workspace.repos.{name}"))
            continue
        findings.append(_ok(check, f"{repo.path}: sessions start from its {head}"))
    return findings


# provider keys -------------------------------------------------------------------------------


def _key_findings(cwd: Path) -> list[Finding]:
    dotenv = _dotenv_names(cwd / ".env")
    where: dict[str, str] = {}
    for name in PROVIDER_KEYS:
        if os.environ.get(name, "").strip():
            where[name] = "set in the environment"
        elif name in dotenv:
            where[name] = "set in .env"
    findings = []
    for name, models in PROVIDER_KEYS.items():
        if name in where:
            findings.append(_ok(name, where[name]))
        elif where:
            findings.append(_ok(name, f"not set (needed only for {models})"))
        else:
            findings.append(
                Finding(
                    name,
                    "warn",
                    "not set",
                    f"export {name}=... or add it to .env to run {models}; without a "
                    "provider key only the simulation backend runs",
                )
            )
    return findings


def _dotenv_names(path: Path) -> set[str]:
    """The names ``path`` (simple ``KEY=VALUE`` lines) gives a non-empty value; the values
    themselves are not kept."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return set()
    names = set()
    for line in text.splitlines():
        key, sep, value = line.strip().removeprefix("export ").partition("=")
        if sep and not key.lstrip().startswith("#") and value.strip().strip("'\""):
            names.add(key.strip())
    return names


# git and Python ------------------------------------------------------------------------------


async def _git_finding() -> Finding:
    fix = (
        "install git (apt install git, brew install git, ...): runs do not need it, but "
        "you need it to look at the branches and commits they leave"
    )
    git = shutil.which("git")
    if git is None:
        return Finding("git", "warn", "git is not on PATH", fix)
    try:
        with anyio.fail_after(TIMEOUT):
            done = await anyio.run_process([git, "--version"], check=False)
    except (OSError, TimeoutError) as err:
        return Finding("git", "warn", f"`{git} --version` did not run ({_reason(err)})", fix)
    if done.returncode != 0:
        return Finding("git", "warn", f"`{git} --version` exited {done.returncode}", fix)
    return _ok("git", done.stdout.decode(errors="replace").strip())


def _python_finding() -> Finding:
    version = platform.python_version()
    if sys.version_info < MINIMUM_PYTHON:
        minimum = ".".join(map(str, MINIMUM_PYTHON))
        return Finding(
            "python",
            "fail",
            f"Python {version}; Orchestra needs {minimum} or newer",
            f"use Python {minimum} or newer (e.g. `uv python install {minimum}`)",
        )
    return _ok("python", f"Python {version} ({sys.executable})")
