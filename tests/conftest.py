"""Fixtures shared by the test modules."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio.from_thread
import pytest

from orchestra.store.base import Store
from orchestra.store.cxdb.fake import FakeCxdb
from orchestra.store.cxdb.store import CxdbStore
from orchestra.store.embedded import EmbeddedStore

#: what would point a test at a real provider; tests that want one set it themselves
_PROVIDER_VARIABLES = (
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_ORG_ID",
    "OPENAI_PROJECT_ID",
    "CXDB_URL",
)


@pytest.fixture(autouse=True)
def _no_provider_keys(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reaches a real provider by accident: a developer's keys would otherwise make
    the agent backend the default. Tests marked ``real_llm`` keep them."""
    if request.node.get_closest_marker("real_llm") is not None:
        return
    for variable in _PROVIDER_VARIABLES:
        if variable == "CXDB_URL" and request.node.get_closest_marker("integration"):
            continue
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EmbeddedStore]:
    """An embedded store in a fresh temporary file, closed after the test."""
    opened = await EmbeddedStore.open(tmp_path / "state.db")
    yield opened
    await opened.close()


@pytest.fixture
def cxdb_portal() -> Iterator[anyio.from_thread.BlockingPortal]:
    """An event loop in a thread of its own, for servers the tests talk to."""
    with anyio.from_thread.start_blocking_portal() as portal:
        yield portal


@pytest.fixture
def cxdb_server(cxdb_portal: anyio.from_thread.BlockingPortal) -> Iterator[FakeCxdb]:
    """A fake CXDB server (binary and HTTP on 127.0.0.1) serving from ``cxdb_portal``'s
    thread, so async fixtures and tests can use it freely; call its coroutines (restart)
    through the portal."""
    with cxdb_portal.wrap_async_context_manager(FakeCxdb()) as server:
        yield server


def _store_kinds() -> list[Any]:
    kinds: list[Any] = ["embedded", "cxdb"]
    if os.environ.get("CXDB_URL"):
        kinds.append(pytest.param("cxdb-server", marks=pytest.mark.integration))
    return kinds


@pytest.fixture(params=_store_kinds())
async def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """Each store implementation in turn, fresh: the embedded store, the CXDB client on the
    fake server and, when CXDB_URL is set, on that real server."""
    opened: Store
    if request.param == "embedded":
        opened = await EmbeddedStore.open(tmp_path / "state.db")
    elif request.param == "cxdb":
        server: FakeCxdb = request.getfixturevalue("cxdb_server")
        opened = await CxdbStore.open(server.url)
    else:
        opened = await CxdbStore.open(os.environ["CXDB_URL"])
    yield opened
    await opened.close()


@pytest.fixture
def cxdb_process(tmp_path: Path) -> Iterator[str]:
    """A fake CXDB server started as a process of its own (as a real one would run); its
    URL, for CXDB_URL or --store in `orchestra` subprocesses."""
    server = subprocess.Popen(
        [sys.executable, "-m", "orchestra.store.cxdb.fake", "--ports-file", str(tmp_path / "p")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        yield str(json.loads(server.stdout.readline())["url"])  # printed once it listens
    finally:
        server.terminate()
        server.wait(timeout=10)
