"""A session as turns in a store: what the engine records, and the state read back from it.

Every payload is a msgpack map with integer keys (CXDB's convention, so CXDB's UI can render
it); ``SCHEMAS`` gives each turn type's fields in tag order (tag = position + 1) and must only
ever grow at the end. The session's first turn also carries CXDB's context metadata under key
30 (client tag, title, labels).

A checkpoint records only what changed since the previous one (context keys written, new
retry and visit counts), so the store grows with new content, not with run length times
context size. Reading a session folds its checkpoints back into a ``SessionState``.
"""

from __future__ import annotations

import os
import platform
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from orchestra.engine.usage import add_usage
from orchestra.errors import ContextNotFound, HeadMoved, SessionTaken, StoreError
from orchestra.store.base import Store, TurnRecord, content_hash, pack

__all__ = [
    "SCHEMAS",
    "SessionRecorder",
    "SessionState",
    "load_session",
    "session_history",
]

SESSION_STARTED = "orchestra.SessionStarted"
CHECKPOINT = "orchestra.Checkpoint"
RECORDED = "orchestra.Recorded"
SESSION_ENDED = "orchestra.SessionEnded"

SCHEMAS: Mapping[str, tuple[str, ...]] = {
    SESSION_STARTED: (
        "pipeline",
        "dot_path",
        "dot_hash",
        "dot_blob",
        "variables",
        "logs_root",
        "goal",
        "started_ms",
        "pid",
        "host",
        "cwd",
    ),
    CHECKPOINT: (
        "node_id",
        "status",
        "outcome",
        "context_set",
        "retries",
        "visits",
        "next_node",
        "executions",
        "restarts",
        "reset",
        "time_ms",
        # The outcome's context_updates keys, in order, when some of their values are left
        # out of "outcome" because "context_set" holds the same value (it usually does: a
        # 1 KB update would otherwise be stored twice in every checkpoint).
        "update_keys",
        # git workspace heads that moved since the last turn ({"app": sha, "app@b": sha})
        "workspace",
    ),
    RECORDED: ("node_id", "kind", "entries", "time_ms", "workspace"),
    SESSION_ENDED: ("status", "reason", "time_ms"),
}
_VERSION = 1
#: a Recorded turn of this kind changes the session itself (a replay's own run directory)
SESSION_KIND = "session"
_METADATA = 30


def encode(
    type_id: str, fields: Mapping[str, Any], extra: Mapping[int, Any] | None = None
) -> bytes:
    names = SCHEMAS[type_id]
    unknown = set(fields) - set(names)
    if unknown:
        raise ValueError(f"{type_id} has no fields {sorted(unknown)}")
    data: dict[int, Any] = {
        tag: fields[name] for tag, name in enumerate(names, 1) if fields.get(name) is not None
    }
    data.update(extra or {})
    return pack(data)


def decode(turn: TurnRecord) -> dict[str, Any]:
    names = SCHEMAS.get(turn.type_id)
    if names is None:
        return {}
    raw = turn.decode()
    if not isinstance(raw, dict):
        raise StoreError(f"turn {turn.turn_id} ({turn.type_id}) is not a map")
    return {name: raw.get(tag) for tag, name in enumerate(names, 1)}


def _outcome_without_set_values(
    outcome: Mapping[str, Any], context_set: Mapping[str, Any]
) -> tuple[dict[str, Any], list[str] | None]:
    """The outcome with the context updates that ``context_set`` repeats left out, and the
    updates' keys in order (None when nothing was left out)."""
    updates: Mapping[str, Any] = outcome.get("context_updates") or {}
    kept = {
        key: value
        for key, value in updates.items()
        if key not in context_set or context_set[key] != value
    }
    if len(kept) == len(updates):
        return dict(outcome), None
    return {**outcome, "context_updates": kept}, list(updates)


def _full_outcome(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A checkpoint's outcome with its context updates whole again."""
    outcome = dict(fields.get("outcome") or {})
    keys = fields.get("update_keys")
    if keys:
        kept = outcome.get("context_updates") or {}
        context_set = fields.get("context_set") or {}
        outcome["context_updates"] = {
            key: kept[key] if key in kept else context_set[key] for key in keys
        }
    return outcome


def _provenance() -> dict[int, Any]:
    """CXDB's provenance map (``cxdb.md`` §1.6, integer keys): which program, process and
    host wrote the session. No environment variables: they may hold secrets."""
    from orchestra import __version__

    return {
        40: "orchestra",
        41: __version__,
        43: os.getpid(),
        45: socket.gethostname(),
        46: platform.machine(),
        70: "orchestra",
        71: __version__,
        80: _now_ms(),
    }


def _now_ms() -> int:
    return int(time.time() * 1000)


def _visit_key(source: str, target: str) -> str:
    return f"{source}->{target}"


@attrs.define
class SessionState:
    """A session as of its last turn: everything resume needs."""

    session_id: str
    pipeline: str = ""
    dot_path: str = ""
    dot_hash: str = ""
    dot_blob: bytes = b""
    goal: str = ""
    variables: dict[str, str] = attrs.Factory(dict)
    logs_root: str = ""
    #: the session this one was forked from by ``replay`` ('' for an original run)
    replay_of: str = ""
    started_ms: int = 0
    pid: int = 0
    #: when the process now holding the session took it up
    owner_since_ms: int = 0
    host: str = ""
    context: dict[str, Any] = attrs.Factory(dict)
    completed_nodes: list[str] = attrs.Factory(list)
    node_outcomes: dict[str, dict[str, Any]] = attrs.Factory(dict)
    retries: dict[str, int] = attrs.Factory(dict)
    visits: dict[tuple[str, str], int] = attrs.Factory(dict)
    executions: dict[str, int] = attrs.Factory(dict)
    restarts: int = 0
    #: where to continue: None before the first checkpoint (the start node), "" at the end
    next_node: str | None = None
    current_node: str = ""
    #: per node, what its handler recorded since that node's last checkpoint
    recorded: dict[str, dict[str, dict[str, Any]]] = attrs.Factory(dict)
    #: (turn id, node id, time) of every checkpoint, oldest first
    checkpoints: list[tuple[int, str, int]] = attrs.Factory(list)
    #: what LLM stages spent, per node, over every execution (``orchestra.engine.usage``)
    usage: dict[str, dict[str, Any]] = attrs.Factory(dict)
    #: the git worktrees' heads as of the last turn that moved one (``orchestra.workspace``),
    #: by ``REPO`` or ``REPO@BRANCH``
    workspace_heads: dict[str, str] = attrs.Factory(dict)
    #: per turn id, the worktree heads that turn recorded (``status --detail`` shows them)
    workspace_moves: dict[int, dict[str, str]] = attrs.Factory(dict)
    #: (turn id, node id, kind, entries) of what handlers recorded inside nodes, oldest
    #: first: the turns ``resume --turn`` can continue from
    records: list[tuple[int, str, str, Mapping[str, Any]]] = attrs.Factory(list)
    ended: str = ""
    end_reason: str = ""
    updated_ms: int = 0
    head_turn_id: int = 0

    def apply(self, turn: TurnRecord) -> None:
        fields = decode(turn)
        self.head_turn_id = turn.turn_id
        # The payload's own time: a store's turn time may be missing (CXDB's binary reads
        # carry none) or be when the turn was copied (export), not when it happened.
        when = fields.get("time_ms") or fields.get("started_ms") or turn.created_at_ms
        self.updated_ms = max(self.updated_ms, int(when or 0))
        if fields.get("workspace"):
            self.workspace_moves[turn.turn_id] = dict(fields["workspace"])
        self.move_heads(fields.get("workspace") or {})
        if turn.type_id == SESSION_STARTED:
            for name in ("pipeline", "dot_path", "dot_hash", "goal", "logs_root", "host"):
                setattr(self, name, str(fields.get(name) or ""))
            self.dot_blob = bytes(fields.get("dot_blob") or b"")
            self.variables = dict(fields.get("variables") or {})
            self.started_ms = int(fields.get("started_ms") or turn.created_at_ms)
            self.pid = int(fields.get("pid") or 0)
            self.owner_since_ms = self.started_ms
        elif turn.type_id == CHECKPOINT:
            self._apply_checkpoint(turn, fields)
        elif turn.type_id == RECORDED and fields.get("kind") == SESSION_KIND:
            self.apply_session(fields.get("entries") or {})
            if (fields.get("entries") or {}).get("pid"):
                self.owner_since_ms = int(fields.get("time_ms") or turn.created_at_ms)
        elif turn.type_id == RECORDED:
            node_id, kind = str(fields["node_id"]), str(fields["kind"])
            entries = fields.get("entries") or {}
            self.recorded.setdefault(node_id, {}).setdefault(kind, {}).update(entries)
            self.records.append((turn.turn_id, node_id, kind, entries))
        elif turn.type_id == SESSION_ENDED:
            self.ended = str(fields.get("status") or "")
            self.end_reason = str(fields.get("reason") or "")

    def move_heads(self, moved: Mapping[str, str]) -> None:
        """Worktree heads a checkpoint or a recorded turn moved ('' for one removed)."""
        for key, sha in moved.items():
            if sha:
                self.workspace_heads[key] = sha
            else:
                self.workspace_heads.pop(key, None)

    def apply_session(self, entries: Mapping[str, Any]) -> None:
        """A change to the session itself: a replay's run directory, or a process taking the
        session up again (resume, replay), which makes it live again."""
        self.logs_root = str(entries.get("logs_root") or self.logs_root)
        self.replay_of = str(entries.get("replay_of") or self.replay_of)
        if entries.get("replay_of"):  # a fork: nobody holds it until a runner takes it up
            self.pid, self.host = 0, ""
        if entries.get("pid"):
            self.pid = int(entries["pid"])
            self.host = str(entries.get("host") or "")
            self.ended = self.end_reason = ""

    def _apply_checkpoint(self, turn: TurnRecord, fields: Mapping[str, Any]) -> None:
        node_id = str(fields["node_id"])
        if fields.get("reset"):
            self.context.clear()
            self.completed_nodes.clear()
            self.node_outcomes.clear()
            self.retries.clear()
            self.visits.clear()
            self.recorded.clear()
        else:
            self.completed_nodes.append(node_id)
            self.node_outcomes[node_id] = _full_outcome(fields)
            self.recorded.pop(node_id, None)
        self.context.update(fields.get("context_set") or {})
        add_usage(self.usage, fields.get("context_set") or {})
        self.retries.update(fields.get("retries") or {})
        executions = fields.get("executions") or {}
        self.executions.update(executions)
        for ran in executions:  # a fan-out's checkpoint names its branches' nodes too
            if ran != node_id:
                self.recorded.pop(ran, None)
        for key, count in (fields.get("visits") or {}).items():
            source, _, target = str(key).partition("->")
            self.visits[(source, target)] = int(count)
        self.restarts = int(fields.get("restarts") or self.restarts)
        self.next_node = str(fields.get("next_node") or "")
        self.current_node = node_id
        self.checkpoints.append((turn.turn_id, node_id, int(fields.get("time_ms") or 0)))

    @property
    def position(self) -> str:
        """The node the session is at: the one it will run next (or was running when it
        stopped), else the last one it completed."""
        if not self.ended and self.next_node:
            return self.next_node
        return self.current_node

    @property
    def status(self) -> str:
        """``success``/``fail``/``interrupted`` once ended, else ``running`` while the
        writing process lives, else ``crashed``."""
        if self.ended:
            return self.ended
        if self.pid and self.host == socket.gethostname() and _alive(self.pid):
            return "running"
        return "crashed"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: session and turn ids are 64-bit unsigned on CXDB, signed in SQLite
_MAX_ID = 2**63


async def session_history(store: Store, session_id: str) -> Sequence[TurnRecord]:
    """Every turn of a session, oldest first (the chain from its head to its first turn)."""
    try:
        context_id = int(session_id)
    except ValueError:
        raise StoreError(f"'{session_id}' is not a session id (a number)") from None
    if not 0 < context_id < _MAX_ID:  # no store holds more; SQLite cannot even ask
        raise ContextNotFound(f"session {session_id} does not exist in {store.location}")
    head = await store.get_head(context_id)
    return await store.get_last(context_id, limit=head.head_depth + 1)


async def load_session(store: Store, session_id: str) -> SessionState:
    """Fold every turn of a session into its state."""
    turns = await session_history(store, session_id)
    state = SessionState(session_id=str(int(session_id)))
    for turn in turns:
        state.apply(turn)
    return state


class SessionRecorder:
    """Writes one session's turns; each call returns once the turn is durable.

    One runner at a time holds a session: the one whose ownership turn (pid, host) is the
    latest. A checkpoint, the end, and taking the session up are appended only if the head
    is still the turn this runner last wrote (atomically on the embedded store); when it
    is not, the turns since are read: answers from ``orchestra answer`` are fine, another
    runner's ownership turn means this one lost the session, and it stops (``SessionTaken``)
    without writing anything more."""

    def __init__(self, store: Store, context_id: int) -> None:
        self.store = store
        self.context_id = context_id
        #: the turn this runner last wrote (None until it writes or takes the session up)
        self.last_turn: int | None = None
        self.lost = False

    @property
    def session_id(self) -> str:
        return str(self.context_id)

    @classmethod
    async def start(
        cls,
        store: Store,
        *,
        pipeline: str,
        dot_path: str,
        dot_source: str,
        goal: str,
        variables: Mapping[str, str],
        logs_root: Callable[[str], str],
    ) -> SessionRecorder:
        """A new session; ``logs_root(session_id)`` names its run directory."""
        head = await store.create_context()
        recorder = cls(store, head.context_id)
        source = dot_source.encode("utf-8")
        blob = await store.put_blob(source)
        metadata = {
            1: "orchestra",
            2: f"{pipeline}: {goal}" if goal else pipeline,
            3: ["orchestra", f"pipeline:{pipeline}"],
            10: _provenance(),
        }
        await recorder._append(
            SESSION_STARTED,
            {
                "pipeline": pipeline,
                "dot_path": dot_path,
                "dot_hash": content_hash(source).hex(),
                "dot_blob": blob,
                "variables": dict(variables),
                "logs_root": logs_root(recorder.session_id),
                "goal": goal,
                "started_ms": _now_ms(),
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "cwd": os.getcwd(),
            },
            extra={_METADATA: metadata},
        )
        return recorder

    async def _append(
        self,
        type_id: str,
        fields: Mapping[str, Any],
        extra: Mapping[int, Any] | None = None,
        *,
        guarded: bool = False,
    ) -> TurnRecord:
        if self.lost:
            raise SessionTaken(f"session {self.context_id} is held by another runner")
        payload = encode(type_id, fields, extra)
        expect = self.last_turn if guarded else None
        while True:
            try:
                record = await self.store.append_turn(
                    self.context_id, type_id, _VERSION, payload, expect_head=expect
                )
            except HeadMoved as moved:
                assert expect is not None
                await self._check_holder(expect)
                expect = moved.head_turn_id
                continue
            self.last_turn = record.turn_id
            return record

    async def _check_holder(self, since: int) -> None:
        """Raise ``SessionTaken`` if another runner took the session up after ``since``."""
        me = (os.getpid(), socket.gethostname())
        for turn in await self.store.get_last(self.context_id, limit=64):
            if turn.turn_id <= since or turn.type_id != RECORDED:
                continue
            fields = decode(turn)
            entries = fields.get("entries") or {}
            if fields.get("kind") != SESSION_KIND or not entries.get("pid"):
                continue
            holder = (int(entries["pid"]), str(entries.get("host") or ""))
            if holder != me:
                self.lost = True
                raise SessionTaken(
                    f"session {self.context_id} was taken up by pid {holder[0]} on "
                    f"{holder[1]}; this runner stops here"
                )

    async def take_up(self, state: SessionState, entries: Mapping[str, Any]) -> None:
        """Hold ``state``'s session for this process (resume, replay): refused with
        ``SessionTaken`` while another live process holds it, or when one takes it first."""
        if state.status == "running" and (state.pid, state.host) != (
            os.getpid(),
            socket.gethostname(),
        ):
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(state.owner_since_ms / 1000))
            raise SessionTaken(
                f"session {state.session_id} is being run by pid {state.pid} on {state.host} "
                f"since {since}; wait for it to end, or stop that process first"
            )
        # The head as the state was read: any turn since (another runner taking it up
        # first) makes this append fail, and the turns since say by whom.
        self.last_turn = state.head_turn_id
        await self._append(
            RECORDED,
            {"node_id": "", "kind": SESSION_KIND, "entries": dict(entries), "time_ms": _now_ms()},
            guarded=True,
        )

    async def checkpoint(
        self,
        *,
        node_id: str,
        status: str,
        outcome: Mapping[str, Any],
        context_set: Mapping[str, Any],
        retries: Mapping[str, int],
        visits: Mapping[tuple[str, str], int],
        executions: Mapping[str, int],
        next_node: str,
        restarts: int = 0,
        reset: bool = False,
        workspace: Mapping[str, str] | None = None,
    ) -> TurnRecord:
        outcome, update_keys = _outcome_without_set_values(outcome, context_set)
        return await self._append(
            CHECKPOINT,
            {
                "node_id": node_id,
                "status": status,
                "outcome": outcome,
                "update_keys": update_keys,
                "context_set": dict(context_set),
                "retries": dict(retries),
                "visits": {_visit_key(s, t): n for (s, t), n in visits.items()},
                "executions": dict(executions),
                "next_node": next_node,
                "restarts": restarts or None,
                "reset": reset or None,
                "time_ms": _now_ms(),
                "workspace": dict(workspace) if workspace else None,
            },
            guarded=True,
        )

    async def record(
        self,
        node_id: str,
        kind: str,
        entries: Mapping[str, Any],
        *,
        workspace: Mapping[str, str] | None = None,
    ) -> None:
        """Keep what a handler must not redo after a crash: answers, finished branches;
        with the worktree heads that moved since the last turn, durable together."""
        await self._append(
            RECORDED,
            {
                "node_id": node_id,
                "kind": kind,
                "entries": dict(entries),
                "time_ms": _now_ms(),
                "workspace": dict(workspace) if workspace else None,
            },
        )

    async def ended(self, status: str, reason: str = "") -> None:
        await self._append(
            SESSION_ENDED,
            {"status": status, "reason": reason, "time_ms": _now_ms()},
            guarded=True,
        )
