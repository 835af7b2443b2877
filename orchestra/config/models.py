"""Which provider and model a node runs on.

A node's ``llm_model``/``llm_provider`` (which already include the model stylesheet's
values) win over its agent's ``model``/``provider`` in ``orchestra.yaml``, which win over the
default provider's ``worker`` tier. A tier resolves through the provider's ``models`` map; a
literal model id passes through, and when no provider is named the id's family names it
(``claude-*`` is Anthropic, ``gpt-*``, ``o1*``, ``o3*``, ``o4*`` and ``codex*`` are OpenAI).
"""

from __future__ import annotations

from typing import Literal, cast

import attrs

from orchestra.config.converter import did_you_mean, unknown_choice
from orchestra.config.model import TIERS, AgentConfig, Config, Tier
from orchestra.errors import ConfigError

__all__ = [
    "DEFAULT_TIER",
    "ModelSource",
    "ResolvedModel",
    "infer_provider",
    "misspelt_tier",
    "resolve_model",
]

DEFAULT_TIER: Tier = "worker"
"""The tier a node runs on when neither it nor its agent names a model."""

ModelSource = Literal["node", "agent", "default"]

_PROVIDER_PREFIXES: tuple[tuple[str, str], ...] = (
    ("claude-", "anthropic"),
    ("gpt-", "openai"),
    ("o1", "openai"),
    ("o3", "openai"),
    ("o4", "openai"),
    ("codex", "openai"),
)


@attrs.frozen
class ResolvedModel:
    """The concrete model a node calls. ``tier`` is the tier it was chosen by, None for a
    literal model id; ``source`` is where the choice came from."""

    provider: str
    model: str
    tier: Tier | None
    source: ModelSource


def infer_provider(model: str) -> str | None:
    """The provider a literal model id belongs to, when its family says so."""
    lowered = model.lower()
    return next((name for prefix, name in _PROVIDER_PREFIXES if lowered.startswith(prefix)), None)


def misspelt_tier(value: str) -> Tier | None:
    """The tier ``value`` is probably a typo of (``smrt``), or None when it reads as a model
    id: model ids carry digits or dashes, tier names are single words."""
    if value in TIERS or not value.isalpha():
        return None
    return cast("Tier | None", did_you_mean(value.lower(), TIERS, cutoff=0.75))


def resolve_model(
    node_model: str | None,
    node_provider: str | None,
    agent: AgentConfig | None,
    config: Config,
) -> ResolvedModel:
    """The provider and model for a node; a ``ConfigError`` names what to set when the
    configuration cannot say."""
    agent_model = agent.model if agent is not None else None
    agent_provider = agent.provider if agent is not None else None
    node_model, node_provider = _given(node_model), _given(node_provider)
    source: ModelSource
    if node_model is not None:
        model, source = node_model, "node"
    elif agent_model is not None:
        model, source = agent_model, "agent"
    else:
        model, source = DEFAULT_TIER, "default"

    if model in TIERS:
        tier = model
        provider = node_provider or agent_provider or config.providers.default_provider
        if provider is None:
            raise _no_provider(config, f"for the {tier!r} tier")
        return ResolvedModel(provider, _tier_model(config, provider, tier), tier, source)

    if source == "node" and misspelt_tier(model) is not None:
        # (the loader has already rejected an agent's misspelt tier, with its line)
        raise ConfigError(unknown_choice(model, "tier", "tiers", TIERS), key="llm_model")

    # A provider named beside the model (or above it) wins; the model id's family comes next,
    # so that a node's gpt-* model is not sent to its agent's provider.
    named = [node_provider] if source == "node" else [node_provider, agent_provider]
    lower = [agent_provider] if source == "node" else []
    candidates = [*named, infer_provider(model), *lower, config.providers.default_provider]
    provider = next((name for name in candidates if name), None)
    if provider is None:
        raise _no_provider(config, f"for model {model!r}")
    return ResolvedModel(provider, model, None, source)


def _given(value: str | None) -> str | None:
    """A node attribute's value, None when it is unset or blank."""
    value = (value or "").strip()
    return value or None


def _tier_model(config: Config, provider: str, tier: Tier) -> str:
    entry = config.providers.by_name.get(provider)
    models = entry.models if entry is not None else {}
    if tier in models:
        return models[tier]
    has = f"it has: {', '.join(models)}" if models else "it has no models configured"
    raise ConfigError(
        f"provider {provider!r} has no {tier!r} tier ({has}); add providers.{provider}.models."
        f"{tier} to orchestra.yaml",
        path=_path(config),
        key=f"providers.{provider}.models",
    )


def _no_provider(config: Config, what: str) -> ConfigError:
    return ConfigError(
        f"no provider {what}: set providers.default (with its models) in orchestra.yaml, "
        "provider on the agent, or llm_provider on the node",
        path=_path(config),
        key="providers.default",
    )


def _path(config: Config) -> str | None:
    return str(config.path) if config.path is not None else None
