"""Agent prompts: the role, persona, personality and task layer files an agent names in
``orchestra.yaml``, composed into a system prompt and a user message.

:func:`compose_agent_prompt` is the entry point; :func:`load_layer` reads and checks one
layer file, for validation before a run.
"""

from orchestra.prompts.compose import LAYER_KINDS as LAYER_KINDS
from orchestra.prompts.compose import TASK_HEADING as TASK_HEADING
from orchestra.prompts.compose import TEXT_KEYS as TEXT_KEYS
from orchestra.prompts.compose import AgentPrompt as AgentPrompt
from orchestra.prompts.compose import LayerKind as LayerKind
from orchestra.prompts.compose import PromptLayer as PromptLayer
from orchestra.prompts.compose import compose_agent_prompt as compose_agent_prompt
from orchestra.prompts.compose import load_layer as load_layer

__all__ = [
    "LAYER_KINDS",
    "TASK_HEADING",
    "TEXT_KEYS",
    "AgentPrompt",
    "LayerKind",
    "PromptLayer",
    "compose_agent_prompt",
    "load_layer",
]
