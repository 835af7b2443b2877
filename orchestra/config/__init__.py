"""``orchestra.yaml``: finding it, loading it, and resolving the models it configures.

:func:`load_config` reads the nearest ``orchestra.yaml`` into a frozen :class:`Config`
(defaults when there is none) and reports every mistake as a
:class:`~orchestra.errors.ConfigError` naming the file, line and dotted key;
:func:`load_env` reads ``.env``; :func:`resolve_model` picks a node's provider and model.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestra.config.load import CONFIG_FILE_NAME as CONFIG_FILE_NAME
    from orchestra.config.load import PROVIDER_KEYS as PROVIDER_KEYS
    from orchestra.config.load import default_backend as default_backend
    from orchestra.config.load import find_config as find_config
    from orchestra.config.load import load_config as load_config
    from orchestra.config.load import load_env as load_env
    from orchestra.config.model import BACKENDS as BACKENDS
    from orchestra.config.model import PUSH_POLICIES as PUSH_POLICIES
    from orchestra.config.model import REASONING_EFFORTS as REASONING_EFFORTS
    from orchestra.config.model import TIERS as TIERS
    from orchestra.config.model import AgentConfig as AgentConfig
    from orchestra.config.model import Backend as Backend
    from orchestra.config.model import Config as Config
    from orchestra.config.model import CxdbConfig as CxdbConfig
    from orchestra.config.model import ModelPrice as ModelPrice
    from orchestra.config.model import ProviderConfig as ProviderConfig
    from orchestra.config.model import Providers as Providers
    from orchestra.config.model import PushPolicy as PushPolicy
    from orchestra.config.model import ReasoningEffort as ReasoningEffort
    from orchestra.config.model import RepoConfig as RepoConfig
    from orchestra.config.model import Tier as Tier
    from orchestra.config.model import ToolHooks as ToolHooks
    from orchestra.config.model import ToolsConfig as ToolsConfig
    from orchestra.config.model import WorkspaceConfig as WorkspaceConfig
    from orchestra.config.models import DEFAULT_TIER as DEFAULT_TIER
    from orchestra.config.models import ModelSource as ModelSource
    from orchestra.config.models import ResolvedModel as ResolvedModel
    from orchestra.config.models import infer_provider as infer_provider
    from orchestra.config.models import resolve_model as resolve_model
    from orchestra.errors import ConfigError as ConfigError

# Names load on first use: reading orchestra.yaml needs ruamel.yaml and cattrs, which
# `orchestra --help` and `orchestra compile` should not pay for.
_WHERE = {
    "CONFIG_FILE_NAME": "orchestra.config.load",
    "PROVIDER_KEYS": "orchestra.config.load",
    "default_backend": "orchestra.config.load",
    "find_config": "orchestra.config.load",
    "load_config": "orchestra.config.load",
    "load_env": "orchestra.config.load",
    "BACKENDS": "orchestra.config.model",
    "PUSH_POLICIES": "orchestra.config.model",
    "REASONING_EFFORTS": "orchestra.config.model",
    "TIERS": "orchestra.config.model",
    "AgentConfig": "orchestra.config.model",
    "Backend": "orchestra.config.model",
    "Config": "orchestra.config.model",
    "CxdbConfig": "orchestra.config.model",
    "ModelPrice": "orchestra.config.model",
    "ProviderConfig": "orchestra.config.model",
    "Providers": "orchestra.config.model",
    "PushPolicy": "orchestra.config.model",
    "ReasoningEffort": "orchestra.config.model",
    "RepoConfig": "orchestra.config.model",
    "Tier": "orchestra.config.model",
    "ToolHooks": "orchestra.config.model",
    "ToolsConfig": "orchestra.config.model",
    "WorkspaceConfig": "orchestra.config.model",
    "DEFAULT_TIER": "orchestra.config.models",
    "ModelSource": "orchestra.config.models",
    "ResolvedModel": "orchestra.config.models",
    "infer_provider": "orchestra.config.models",
    "resolve_model": "orchestra.config.models",
    "ConfigError": "orchestra.errors",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'orchestra.config' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "BACKENDS",
    "CONFIG_FILE_NAME",
    "DEFAULT_TIER",
    "PROVIDER_KEYS",
    "PUSH_POLICIES",
    "REASONING_EFFORTS",
    "TIERS",
    "AgentConfig",
    "Backend",
    "Config",
    "ConfigError",
    "CxdbConfig",
    "ModelPrice",
    "ModelSource",
    "ProviderConfig",
    "Providers",
    "PushPolicy",
    "ReasoningEffort",
    "RepoConfig",
    "ResolvedModel",
    "Tier",
    "ToolHooks",
    "ToolsConfig",
    "WorkspaceConfig",
    "default_backend",
    "find_config",
    "infer_provider",
    "load_config",
    "load_env",
    "resolve_model",
]
