"""What ``orchestra.yaml`` holds, as frozen value classes.

The file's sections map one to one onto these classes (``backend``, ``providers``,
``agents``, ``cxdb``, ``workspace``, ``tools``, ``prices``); ``orchestra.config.load``
builds them from the file and reports mistakes. Relative paths in a loaded ``Config`` have
already been made absolute against the config file's directory.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal, get_args

import attrs

__all__ = [
    "BACKENDS",
    "PUSH_POLICIES",
    "REASONING_EFFORTS",
    "TIERS",
    "AgentConfig",
    "Backend",
    "Config",
    "CxdbConfig",
    "ModelPrice",
    "ProviderConfig",
    "Providers",
    "PushPolicy",
    "ReasoningEffort",
    "RepoConfig",
    "Tier",
    "ToolHooks",
    "ToolsConfig",
    "WorkspaceConfig",
]

Backend = Literal["agent", "direct", "cli_agent", "simulation"]
"""How codergen nodes run: Orchestra's own tool loop, one model call, an external CLI agent,
or canned responses with no model at all."""
BACKENDS: tuple[Backend, ...] = get_args(Backend)

Tier = Literal["smart", "worker", "cheap"]
"""A provider-neutral model grade; each provider maps tiers to concrete model ids."""
TIERS: tuple[Tier, ...] = get_args(Tier)

PushPolicy = Literal["on_completion", "on_checkpoint", "never"]
PUSH_POLICIES: tuple[PushPolicy, ...] = get_args(PushPolicy)

ReasoningEffort = Literal["low", "medium", "high"]
REASONING_EFFORTS: tuple[ReasoningEffort, ...] = get_args(ReasoningEffort)


@attrs.frozen
class ProviderConfig:
    """One LLM provider: its tier map and, for a compatible server, where it listens."""

    models: Mapping[Tier, str] = attrs.field(factory=dict)
    base_url: str | None = None


@attrs.frozen
class Providers:
    """The ``providers`` section: an optional default and the providers by name.

    In the file the providers sit beside ``default`` (``providers: {default: anthropic,
    anthropic: {models: ...}}``); here they are gathered in ``by_name``.
    """

    default: str | None = None
    by_name: Mapping[str, ProviderConfig] = attrs.field(factory=dict)

    @property
    def default_provider(self) -> str | None:
        """``default``, or the one provider configured when there is only one."""
        if self.default is not None:
            return self.default
        if len(self.by_name) == 1:
            return next(iter(self.by_name))
        return None


@attrs.frozen
class AgentConfig:
    """A named agent: its four prompt layer files and its model choice.

    ``model`` is a tier or a literal model id; ``provider`` names the provider explicitly
    when the model id does not imply it.
    """

    role: Path | None = None
    persona: Path | None = None
    personality: Path | None = None
    task: Path | None = None
    model: str | None = None
    provider: str | None = None
    reasoning_effort: ReasoningEffort | None = None


@attrs.frozen
class CxdbConfig:
    url: str | None = None


@attrs.frozen
class RepoConfig:
    """A repository agents work in, on session branches named ``branch_prefix`` + graph id
    + ``/`` + session id. ``remote`` (a remote's name or a URL) is where ``push`` sends the
    branch, and where a missing ``path`` is cloned from (``clone_depth`` commits deep)."""

    path: Path
    branch_prefix: str = "orchestra/"
    push: PushPolicy = "never"
    remote: str | None = None
    clone_depth: int | None = None


@attrs.frozen
class WorkspaceConfig:
    """``repos`` by name; ``tools`` by repository name, then tool name: shell commands
    offered to agents as the tool ``REPO__NAME``, run in that repository's worktree."""

    repos: Mapping[str, RepoConfig] = attrs.field(factory=dict)
    tools: Mapping[str, Mapping[str, str]] = attrs.field(factory=dict)


@attrs.frozen
class ToolHooks:
    """Shell commands run before and after each agent tool call (Attractor §9.7): a
    non-zero exit from ``pre`` skips the call."""

    pre: str | None = None
    post: str | None = None


@attrs.frozen
class ToolsConfig:
    """``shell_timeout`` in seconds (``120``, or ``"2m"`` in the file); None leaves the
    agent's own default."""

    shell_timeout: float | None = None
    hooks: ToolHooks = ToolHooks()


@attrs.frozen
class ModelPrice:
    """US dollars per million tokens."""

    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None


@attrs.frozen
class Config:
    """Everything ``orchestra.yaml`` configures; ``Config()`` is the configuration with no file.

    ``prices`` is a file of prices (absolute) or the prices themselves, keyed by model id.
    ``path`` is the file this was loaded from, None for defaults.
    """

    backend: Backend = "simulation"
    providers: Providers = Providers()
    agents: Mapping[str, AgentConfig] = attrs.field(factory=dict)
    cxdb: CxdbConfig = CxdbConfig()
    workspace: WorkspaceConfig = WorkspaceConfig()
    tools: ToolsConfig = ToolsConfig()
    prices: Path | Mapping[str, ModelPrice] | None = None
    path: Path | None = None
