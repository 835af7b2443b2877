"""``orchestra.yaml``: finding it, loading it, and resolving the models it configures.

:func:`load_config` reads the nearest ``orchestra.yaml`` into a frozen :class:`Config`
(defaults when there is none) and reports every mistake as a
:class:`~orchestra.errors.ConfigError` naming the file, line and dotted key;
:func:`load_env` reads ``.env``; :func:`resolve_model` picks a node's provider and model.
"""

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
