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

__all__ = ["CodergenHandler", "ask_backend", "finish_stage", "render_node_prompt"]

_LAST_RESPONSE_CHARS = 200


class CodergenHandler:
    async def execute(self, node: Node, context: Context, graph: Graph, stage: StageRun) -> Outcome:
        prompt = render_node_prompt(node, context, graph, stage)
        if is_chat(node):
            _write_prompt(stage, prompt)
            reply = await ChatHandler().run(node, prompt, context, stage)
            return await finish_stage(node, reply, stage)
        return await ask_backend(node, prompt, context, stage)


def render_node_prompt(node: Node, context: Context, graph: Graph, stage: StageRun) -> str:
    """The node's ``prompt`` (its label when it has none) with ``$goal``, run variables and
    context values filled in, and ``response('NODE')`` calls by the whole response of that
    stage (``last_response`` holds only its start); a template that does not render is a
    ``TerminalError``."""
    template = node.prompt or node.label
    where = f"node '{node.id}' prompt"

    def response(node_id: str) -> str:
        path = stage.logs_root / str(node_id) / "response.md"
        try:
            return path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            raise TemplateError(
                f"{where}: response({node_id!r}): stage '{node_id}' has no response yet "
                f"({path} does not exist)"
            ) from None

    try:
        return render_prompt(
            template.replace("$goal", goal_text(graph.goal)),
            stage.template_variables(node.id),
            context.as_mapping(),
            where,
            {"response": response},
        )
    except TemplateError as err:
        raise TerminalError(str(err)) from None


async def ask_backend(node: Node, prompt: str, context: Context, stage: StageRun) -> Outcome:
    """Send ``prompt`` to the stage's backend and keep the record: ``prompt.md``, then the
    whole answer in ``response.md``. Returns the outcome the answer leads to."""
    _write_prompt(stage, prompt)
    result = await stage.backend.run(node, prompt, context, stage)
    return await finish_stage(node, result, stage)


async def finish_stage(node: Node, result: str | Outcome | StageReply, stage: StageRun) -> Outcome:
    """Write ``response.md`` from ``result`` and, in a git workspace, commit what the stage
    left uncommitted; the stage's outcome (success with the text, for a bare string)."""
    if isinstance(result, StageReply):
        response, outcome = result.text, result.outcome
    elif isinstance(result, Outcome):
        response, outcome = str(result.context_updates.get("last_response", result.notes)), result
    else:
        response = str(result)
        outcome = Outcome.success(
            f"stage completed: {node.id}",
            context_updates={
                "last_stage": node.id,
                "last_response": response[:_LAST_RESPONSE_CHARS],
            },
        )
    (stage.stage_dir / "response.md").write_text(response, encoding="utf-8")
    if stage.workspace is not None:
        model = str(outcome.context_updates.get(f"usage.{node.id}.model", ""))
        await stage.workspace.commit(
            None, model=model or _backend_name(stage, node), turn="end", untracked=True
        )
    return outcome


def _write_prompt(stage: StageRun, prompt: str) -> None:
    stage.stage_dir.mkdir(parents=True, exist_ok=True)
    (stage.stage_dir / "prompt.md").write_text(prompt, encoding="utf-8")


def _backend_name(stage: StageRun, node: Node) -> str:
    """The name of the backend that ran ``node`` (``simulation``, ``cli_agent``), for a
    commit's author when no model is known."""
    backend = stage.backend
    chosen = getattr(backend, "backend_for", None)
    return str(getattr(chosen(node), "name", "")) if callable(chosen) else backend.name
