"""``orchestra answer``: answer the question a session waits on, from any terminal."""

from __future__ import annotations

import sys

import anyio
import click

from orchestra.errors import OrchestraError
from orchestra.store.location import open_store
from orchestra_cli.run import _STORE_HELP, EXIT_INVALID


@click.command("answer")
@click.argument("session")
@click.option("--choice", metavar="KEY", help="The choice to take: its key (A) or its label.")
@click.option(
    "--text",
    metavar="TEXT",
    help="A typed answer, for a gate that asks for one, or a chat message (/done ends the "
    "chat, /reject rejects it).",
)
@click.option("--store", "store_path", metavar="PATH|URL", help=_STORE_HELP)
def answer_command(
    session: str, choice: str | None, text: str | None, store_path: str | None
) -> None:
    """Answer the question SESSION waits on (a run started with --wait-for-answers).

    A gate takes --choice (and --text when it asks for text); a chat node takes the
    person's next message as --text. `orchestra status SESSION` shows the question and its
    choices, or the agent's last chat message. The answer is a turn in
    the session's store, so this works from another terminal or machine sharing the store.

    Exit status: 0 answered, 2 no question is waiting or the answer does not fit it.
    """
    from orchestra.answers import answer_question

    async def main() -> str:
        store = await open_store(store_path)
        try:
            pending, given = await answer_question(store, session, choice=choice, text=text)
        finally:
            await store.close()
        shown = given.selected_option.label if given.selected_option else given.text
        return f"answered {pending.node_id} ({pending.text}): {shown}"

    try:
        click.echo(anyio.run(main))
    except OrchestraError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(EXIT_INVALID)
