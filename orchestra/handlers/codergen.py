"""The codergen handler (spec §4.5): render the prompt, ask the backend, keep the record.

Writes ``prompt.md`` and ``response.md`` in the stage directory (the engine writes
``status.json`` for every stage). A node with ``agent.mode="interactive"`` is a chat with a
person (``orchestra.handlers.chat``); its response is the agent's last reply. In a git
workspace, whatever the stage changed and its backend did not commit turn by turn (a CLI
agent, a simulated stage) is committed when it ends.
"""

from __future__ import annotations

from orchestra.backends.base import StageReply
from orchestra.engine.context import Context
from orchestra.graph import Graph, Node
from orchestra.handlers.base import StageRun, TerminalError
from orchestra.handlers.chat import ChatHandler, is_chat
from orchestra.outcome import Outcome
from orchestra.templates import TemplateError, render_prompt
from orchestra.transforms import goal_text

__all__ = ["CodergenHandler"]

_LAST_RESPONSE_CHARS = 200


class CodergenHandler:
    async def execute(self, node: Node, context: Context, graph: Graph, stage: StageRun) -> Outcome:
        template = node.prompt or node.label
        try:
            prompt = render_prompt(
                template.replace("$goal", goal_text(graph.goal)),
                stage.variables,
                context.as_mapping(),
                f"node '{node.id}' prompt",
            )
        except TemplateError as err:
            raise TerminalError(str(err)) from None
        stage.stage_dir.mkdir(parents=True, exist_ok=True)
        (stage.stage_dir / "prompt.md").write_text(prompt, encoding="utf-8")
        if is_chat(node):
            result: str | Outcome | StageReply = await ChatHandler().run(
                node, prompt, context, stage
            )
        else:
            result = await stage.backend.run(node, prompt, context, stage)
        if isinstance(result, StageReply):
            response, result = result.text, result.outcome
        elif isinstance(result, Outcome):
            response = str(result.context_updates.get("last_response", result.notes))
        else:
            response = str(result)
            result = Outcome.success(
                f"stage completed: {node.id}",
                context_updates={
                    "last_stage": node.id,
                    "last_response": response[:_LAST_RESPONSE_CHARS],
                },
            )
        (stage.stage_dir / "response.md").write_text(response, encoding="utf-8")
        if stage.workspace is not None:
            model = str(result.context_updates.get(f"usage.{node.id}.model", ""))
            await stage.workspace.commit(
                None, model=model or _backend_name(stage, node), turn="end", untracked=True
            )
        return result


def _backend_name(stage: StageRun, node: Node) -> str:
    """The name of the backend that ran ``node`` (``simulation``, ``cli_agent``), for a
    commit's author when no model is known."""
    backend = stage.backend
    chosen = getattr(backend, "backend_for", None)
    return str(getattr(chosen(node), "name", "")) if callable(chosen) else backend.name
