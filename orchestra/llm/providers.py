"""Building the unified client from the configuration and the environment: one adapter per
provider whose key is set (``ANTHROPIC_API_KEY``, ``OPENAI_API_KEY``), at the base URL
``orchestra.yaml`` gives (``providers.NAME.base_url``) or the SDK's variable
(``ANTHROPIC_BASE_URL``, ``OPENAI_BASE_URL``). Adapters import their SDK on first use."""

from __future__ import annotations

from collections.abc import Mapping

from orchestra.config import Config
from orchestra.llm.client import Client, ProviderAdapter

__all__ = ["client_from_config"]


def client_from_config(config: Config, environ: Mapping[str, str]) -> Client:
    providers = config.providers.by_name
    adapters: dict[str, ProviderAdapter] = {}
    key = environ.get("ANTHROPIC_API_KEY", "")
    if key:
        from orchestra.llm.anthropic import AnthropicAdapter

        configured = providers.get("anthropic")
        base_url = (configured.base_url if configured else None) or environ.get(
            "ANTHROPIC_BASE_URL"
        )
        adapters["anthropic"] = AnthropicAdapter(key, base_url=base_url or None)
    key = environ.get("OPENAI_API_KEY", "")
    if key:
        from orchestra.llm.openai import OpenAIAdapter

        configured = providers.get("openai")
        base_url = (configured.base_url if configured else None) or environ.get("OPENAI_BASE_URL")
        adapters["openai"] = OpenAIAdapter(
            key,
            base_url=base_url or None,
            organization=environ.get("OPENAI_ORG_ID") or None,
            project=environ.get("OPENAI_PROJECT_ID") or None,
        )
    default = config.providers.default
    if default not in adapters:
        default = next(iter(adapters), None)
    return Client(adapters, default_provider=default)
