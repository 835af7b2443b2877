"""Node handlers, one module per type, and the registry the engine resolves them through."""

from __future__ import annotations

from orchestra.handlers.base import Handler as Handler
from orchestra.handlers.base import StageRun as StageRun
from orchestra.handlers.base import TerminalError as TerminalError
from orchestra.handlers.codergen import CodergenHandler
from orchestra.handlers.human import WaitForHumanHandler
from orchestra.handlers.manager import ManagerLoopHandler
from orchestra.handlers.parallel import FanInHandler, ParallelHandler
from orchestra.handlers.registry import HandlerRegistry as HandlerRegistry
from orchestra.handlers.simple import ConditionalHandler, ExitHandler, StartHandler
from orchestra.handlers.tool import ToolHandler

__all__ = ["Handler", "HandlerRegistry", "StageRun", "TerminalError", "default_registry"]


def default_registry() -> HandlerRegistry:
    """A registry with every built-in handler."""
    return HandlerRegistry(
        {
            "start": StartHandler(),
            "exit": ExitHandler(),
            "conditional": ConditionalHandler(),
            "codergen": CodergenHandler(),
            "tool": ToolHandler(),
            "wait.human": WaitForHumanHandler(),
            "parallel": ParallelHandler(),
            "parallel.fan_in": FanInHandler(),
            "stack.manager_loop": ManagerLoopHandler(),
        }
    )
