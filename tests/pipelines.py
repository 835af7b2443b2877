"""Helpers the engine tests share: DOT written indented, pipelines loaded with a fake sleep
into ``tmp_path``, and a session's turns decoded."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from orchestra.engine.session import decode, session_history
from orchestra.pipeline import Pipeline
from orchestra.store.base import Store
from orchestra.testing import RecordingSleep


def dot(text: str) -> str:
    """DOT text written indented in a test."""
    return textwrap.dedent(text).strip() + "\n"


def load(
    source: str, tmp_path: Path, store: Store, run_dir: str = "run", **kwargs: Any
) -> Pipeline:
    """The pipeline, with its store and run directory under ``tmp_path`` and a fake sleep."""
    pipeline = Pipeline.load(source, store=store, logs_root=tmp_path / run_dir, **kwargs)
    pipeline.sleep = RecordingSleep()
    return pipeline


def delays(pipeline: Pipeline) -> list[float]:
    """The backoff delays the pipeline slept (none of them for real)."""
    sleep = pipeline.sleep
    assert isinstance(sleep, RecordingSleep)
    return sleep.delays


async def turns(store: Store, session_id: str, type_id: str) -> list[dict[str, Any]]:
    """The decoded turns of one type in a session, oldest first."""
    history = await session_history(store, session_id)
    return [decode(turn) for turn in history if turn.type_id == type_id]
