"""The backend a run uses when none is given: chosen per node from the configuration.

``orchestra.yaml``'s ``backend:`` (or ``--backend``) names the default; a node's own
``backend=`` attribute overrides it for that node, except on ``simulation``, which is a dry
run of the whole pipeline. When the file names none, a provider key
in the environment (or in ``.env`` beside the file) makes ``agent`` the default, and without
one ``simulation`` is, which needs no model at all. Backends are built on first use, and one
LLM client serves them all; ``aclose()`` closes it.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

import attrs

from orchestra.backends.base import CodergenBackend, StageReply
from orchestra.backends.chat import ChatLine, chat_reply
from orchestra.backends.threads import Threads
from orchestra.config import BACKENDS, Backend, Config
from orchestra.config.load import (
    PROVIDER_KEYS,
    default_backend,
    find_config,
    load_config,
    load_env,
)
from orchestra.engine.context import Context
from orchestra.errors import ConfigError
from orchestra.graph import Node
from orchestra.handlers.base import StageRun, TerminalError
from orchestra.llm.client import Client
from orchestra.outcome import Outcome

__all__ = ["ConfiguredBackend", "Settings", "load_settings"]

#: the backends that call a provider's API through Orchestra's client
_LLM_BACKENDS = frozenset({"agent", "direct"})


@attrs.frozen
class Settings:
    """A run's configuration and the environment it sees: the process environment, plus
    what ``.env`` defines that the environment does not (the process is never changed)."""

    config: Config
    #: never in the repr: it holds the API keys
    environ: Mapping[str, str] = attrs.field(repr=False)


def load_settings(start: Path | None = None) -> Settings:
    """``orchestra.yaml`` found from ``start`` (a pipeline file or a directory; default the
    working directory) and the ``.env`` beside it (or in the working directory)."""
    found = find_config(start if start is not None else Path.cwd())
    environ = dict(os.environ)
    load_env(found.parent if found is not None else Path.cwd(), environ=environ)
    if found is None:
        return Settings(Config(backend=default_backend(environ)), environ)
    return Settings(load_config(found, environ=environ), environ)


class ConfiguredBackend:
    """A ``CodergenBackend`` that hands each node to the backend it is configured for."""

    name = "configured"

    def __init__(
        self,
        settings: Settings,
        *,
        default: str | None = None,
        workspace: Path | None = None,
        client: Client | None = None,
    ) -> None:
        self.settings = settings
        chosen = default if default is not None else settings.config.backend
        self.default: Backend = _backend_name(chosen, "--backend")
        self.workspace = workspace
        self._client = client
        self._owns_client = client is None
        self._backends: dict[str, CodergenBackend] = {}
        #: one set of full-fidelity threads for the agent and direct backends: a thread
        #: may pass from a direct stage to an agent stage and back
        self._threads = Threads()
        if self.default in _LLM_BACKENDS and client is None:
            _require_key(self.default, settings)

    async def run(
        self, node: Node, prompt: str, context: Context, stage: StageRun
    ) -> str | Outcome | StageReply:
        return await self.backend_for(node).run(node, prompt, context, stage)

    async def chat(
        self, node: Node, prompt: str, context: Context, stage: StageRun, lines: Sequence[ChatLine]
    ) -> Outcome | StageReply:
        return await chat_reply(self.backend_for(node), node, prompt, context, stage, lines)

    def backend_for(self, node: Node) -> CodergenBackend:
        """The node's ``backend=`` if it has one, else the default; built on first use.
        A run on ``simulation`` is a dry run: every node is simulated, whatever its own
        ``backend=`` says (the value is still checked)."""
        given = str(node.attrs.get("backend") or "").strip()
        try:
            name = _backend_name(given, f"node '{node.id}' backend") if given else self.default
            if self.default == "simulation":
                name = "simulation"
            if name not in self._backends:
                self._backends[name] = self._build(name)
        except ConfigError as err:
            raise TerminalError(str(err)) from None
        return self._backends[name]

    def _build(self, name: Backend) -> CodergenBackend:
        config = self.settings.config
        if name == "simulation":
            from orchestra.backends.simulation import SimulationBackend

            return SimulationBackend()
        if name == "cli_agent":
            from orchestra.backends.cli_agent import CliAgentBackend

            return CliAgentBackend(config, workspace=self.workspace, environ=self.settings.environ)
        client = self._llm_client(name)
        if name == "direct":
            from orchestra.backends.direct import DirectBackend

            return DirectBackend(config, client, threads=self._threads)
        from orchestra.backends.agent import AgentBackend

        return AgentBackend(config, client, workspace=self.workspace, threads=self._threads)

    def _llm_client(self, name: Backend) -> Client:
        if self._client is None:
            _require_key(name, self.settings)
            from orchestra.llm.providers import client_from_config

            self._client = client_from_config(self.settings.config, self.settings.environ)
        return self._client

    def commit_summariser(self) -> Callable[[str, str], Awaitable[str]] | None:
        """A call to the ``cheap`` tier for commit messages (``orchestra.workspace``); None
        on a simulated run, without a cheap tier or without the provider's key."""
        from orchestra.config import resolve_model

        if self.default not in _LLM_BACKENDS:
            return None
        try:
            resolved = resolve_model("cheap", None, None, self.settings.config)
            _require_key("direct", self.settings)
        except ConfigError:
            return None

        async def summarise(system: str, user: str) -> str:
            from orchestra.llm.types import Message, Request

            request = Request(
                model=resolved.model,
                provider=resolved.provider,
                messages=(Message.system(system), Message.user(user)),
                max_tokens=400,
            )
            response = await self._llm_client("direct").complete(request)
            return response.text

        return summarise

    async def aclose(self) -> None:
        """Close the LLM client this backend made (one given to it is the giver's to close)."""
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            self._backends.clear()  # they hold the closed client; a next run builds anew
            await client.close()


def _backend_name(value: str, where: str) -> Backend:
    name = "agent" if value == "langgraph" else value  # older configs' name for the loop
    for backend in BACKENDS:
        if backend == name:
            return backend
    raise ConfigError(f"{where}: unknown backend {value!r}; expected one of {', '.join(BACKENDS)}")


def _require_key(backend: str, settings: Settings) -> None:
    if any(settings.environ.get(variable, "").strip() for variable in PROVIDER_KEYS.values()):
        return
    where = settings.config.path.parent if settings.config.path else Path.cwd()
    raise ConfigError(
        f"the {backend} backend calls an LLM, and no provider key is set: set "
        f"{' or '.join(PROVIDER_KEYS.values())} in the environment or in {where / '.env'}, "
        "or use the simulation backend (--backend simulation), which needs no key"
    )
