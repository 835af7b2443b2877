"""Commit messages for agent commits.

The ``cheap`` tier writes them from the diff (a conventional-commit summary under 72
characters, then one to three lines); on the simulation backend, without a cheap tier, or
when the model call fails, a deterministic message names the files, and the run goes on.
Every message ends with ``Orchestra-*`` trailers that tie the commit to its session.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

from orchestra.workspace.git import Change

__all__ = ["DIFF_BUDGET", "CommitMessages", "Summarise", "fallback_message", "trailers"]

#: characters of diff the model is shown; the rest is cut, with a note saying so
DIFF_BUDGET = 12_000
SUMMARY_LIMIT = 72
_TIMEOUT = 60.0

#: ``await summarise(system, user)``: a model's answer to one prompt
Summarise = Callable[[str, str], Awaitable[str]]

SYSTEM = (
    "You write git commit messages. Answer with the message only: a first line in the "
    "conventional-commit form (feat:, fix:, test:, docs:, refactor:, chore:) under 72 "
    "characters, then a blank line and one to three short lines on what changed and why. "
    "No code fences, no quotes."
)


def trailers(*, session: str, node: str, turn: str, model: str, pipeline: str) -> str:
    """The ``Orchestra-*`` trailers, one per line (empty values left out)."""
    pairs = [
        ("Orchestra-Session", session),
        ("Orchestra-Node", node),
        ("Orchestra-Turn", turn),
        ("Orchestra-Model", model),
        ("Orchestra-Pipeline", pipeline),
    ]
    return "".join(f"{key}: {value}\n" for key, value in pairs if value)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def fallback_message(node_id: str, change: Change) -> tuple[str, str]:
    """``chore(NODE): update a.py, b.py`` and, for more than a few files, their list."""
    files = change.files
    named = ", ".join(files)
    if len(files) > 3 or len(f"chore({node_id}): update {named}") > SUMMARY_LIMIT:
        summary = _cut(f"chore({node_id}): update {len(files)} files", SUMMARY_LIMIT)
        listed = [f"- {name}" for name in files[:20]]
        if len(files) > 20:
            listed.append(f"- and {len(files) - 20} more")
        return summary, "\n".join(listed)
    return f"chore({node_id}): update {named}", ""


def _prompt(node_id: str, change: Change) -> str:
    diff = change.diff
    if len(diff) > DIFF_BUDGET:
        diff = diff[:DIFF_BUDGET] + f"\n[… {len(change.diff) - DIFF_BUDGET} characters cut]\n"
    files = "\n".join(f"- {name}" for name in change.files)
    return f"The agent '{node_id}' changed these files:\n{files}\n\nThe diff:\n{diff}"


def _parse(text: str) -> tuple[str, str] | None:
    lines = [line.rstrip() for line in text.strip().strip("`").strip().splitlines()]
    lines = [line for line in lines if line.strip() != "```"]
    if not lines or not lines[0].strip():
        return None
    summary = _cut(lines[0].strip().strip('"'), SUMMARY_LIMIT)
    body = [line for line in lines[1:] if line.strip()][:3]
    return summary, "\n".join(body)


class CommitMessages:
    """Writes each commit's message, with ``summarise`` (a cheap model) when given."""

    def __init__(self, summarise: Summarise | None = None) -> None:
        self.summarise = summarise

    async def write(self, node_id: str, change: Change) -> tuple[str, str]:
        """The summary line and the body (may be empty)."""
        fallback = fallback_message(node_id, change)
        if self.summarise is None:
            return fallback
        try:
            with anyio.fail_after(_TIMEOUT):
                text = await self.summarise(SYSTEM, _prompt(node_id, change))
        except Exception:  # any failure of the model: the deterministic message will do
            return fallback
        return _parse(text) or fallback
