"""From DOT source to a finished run: parse, transform, validate (spec §9.1), then execute.

``Pipeline.load`` prepares a graph and refuses one with validation errors; ``run`` executes
it as a new session in the store; ``resume`` continues a session from its last checkpoint.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import attrs

from orchestra.backends.base import CodergenBackend
from orchestra.dot import parse_dot
from orchestra.engine.runner import Runner, RunResult
from orchestra.engine.session import SESSION_KIND, SessionRecorder, SessionState, load_session
from orchestra.errors import OrchestraError, RunDirectoryError, ValidationError
from orchestra.events import Event, EventBus
from orchestra.graph import Graph
from orchestra.handlers import HandlerRegistry, default_registry
from orchestra.handlers.base import Handler
from orchestra.interviewer.base import AutoApproveInterviewer, Interviewer
from orchestra.store.base import Store, content_hash
from orchestra.store.location import open_store
from orchestra.transforms import TransformLike, apply_transforms
from orchestra.validation import Diagnostic, LintRule, Severity, validate
from orchestra.validation.rules import SHARED_WORKSPACE_RULE

if TYPE_CHECKING:
    from orchestra.backends.configured import ConfiguredBackend
    from orchestra.config import Config
    from orchestra.workspace import SessionWorkspaces

__all__ = [
    "Pipeline",
    "ResumeRefused",
    "default_state_path",
    "prepare_pipeline",
    "replay",
    "resume",
]

EventCallback = Callable[[Event], Awaitable[None] | None]


class ResumeRefused(OrchestraError, RuntimeError):
    """A session that cannot be resumed as asked: finished, or its DOT file changed."""


def default_state_path() -> Path:
    """``.orchestra/state.db`` in the working directory."""
    return Path(".orchestra") / "state.db"


def default_logs_root(session_id: str, store: Store | None = None) -> Path:
    """``.orchestra/runs/SESSION`` in the working directory for a session of the default
    store (``.orchestra/state.db`` there); for any other store, the session id is prefixed
    with the store's own name (``cxdb-HOST-PORT-7``, ``team-3f9a0c-7``), so that session 7
    of two stores never shares a run directory."""
    runs = Path(".orchestra") / "runs"
    if store is None:
        return runs / session_id
    tag = store_tag(store.location)
    return runs / (f"{tag}-{session_id}" if tag else session_id)


def store_tag(location: str) -> str:
    """'' for the default store; a short, stable name for any other."""
    if "://" in location:
        rest = location.split("://", 1)[1].split("?", 1)[0].rstrip("/")
        return "cxdb-" + re.sub(r"[^A-Za-z0-9.]+", "-", rest).strip("-")
    path = Path(location).resolve()
    if path == (Path.cwd() / ".orchestra" / "state.db").resolve():
        return ""
    digest = content_hash(str(path).encode()).hex()[:6]
    return f"{re.sub(r'[^A-Za-z0-9]+', '-', path.stem).strip('-') or 'store'}-{digest}"


def prepare_pipeline(
    source: str | os.PathLike[str],
    *,
    transforms: Iterable[TransformLike] = (),
    rules: Iterable[LintRule] = (),
    handler_types: Iterable[str] | None = None,
) -> tuple[Graph, list[Diagnostic]]:
    """Parse ``source`` (a path or DOT text), apply the built-in then ``transforms``, and
    lint the result with the built-in then ``rules``. Raises only for a file that cannot be
    read or parsed; lint findings, errors included, are returned for the caller to judge."""
    graph = apply_transforms(parse_dot(source), transforms)
    return graph, validate(graph, rules, handler_types=handler_types)


class Pipeline:
    """A validated graph and what it runs with; ``await pipeline.run()`` executes it."""

    def __init__(
        self,
        graph: Graph,
        *,
        diagnostics: Iterable[Diagnostic] = (),
        variables: Mapping[str, str] | None = None,
        store: Store | None = None,
        config: Config | None = None,
        backend: CodergenBackend | str | None = None,
        interviewer: Interviewer | None = None,
        handlers: HandlerRegistry | None = None,
        logs_root: str | os.PathLike[str] | None = None,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self.graph = graph
        self.diagnostics = list(diagnostics)
        self.variables = dict(variables or {})
        self._store = store
        self._configured: ConfiguredBackend | None = None
        if backend is None or isinstance(backend, str):
            # Imported here: reading orchestra.yaml costs imports a compile does not need.
            from orchestra.backends.configured import ConfiguredBackend, Settings, load_settings

            settings = load_settings(Path(graph.path) if graph.path else None)
            if config is not None:
                settings = Settings(config, settings.environ)
            self._configured = ConfiguredBackend(settings, default=backend)
            self.backend: CodergenBackend = self._configured
            config = settings.config
        else:
            self.backend = backend
            if config is None:
                from orchestra.backends.configured import load_settings

                config = load_settings(Path(graph.path) if graph.path else None).config
        #: the configuration the run uses (its ``workspace.repos`` give the git worktrees)
        self.config: Config = config
        if config.workspace.repos:  # every parallel branch has a worktree of its own
            self.diagnostics = [d for d in self.diagnostics if d.rule != SHARED_WORKSPACE_RULE]
        self.interviewer = interviewer or AutoApproveInterviewer()
        self.handlers = handlers or default_registry()
        self.logs_root = Path(logs_root) if logs_root is not None else None
        self.sleep = sleep
        self.bus = EventBus()
        self.session_id: str | None = None
        #: the git workspaces of the last run, when ``workspace.repos`` is configured
        self.workspaces: SessionWorkspaces | None = None

    @classmethod
    def load(
        cls,
        source: str | os.PathLike[str],
        *,
        variables: Mapping[str, str] | None = None,
        store: Store | None = None,
        config: Config | None = None,
        backend: CodergenBackend | str | None = None,
        interviewer: Interviewer | None = None,
        handlers: Mapping[str, Handler] | HandlerRegistry | None = None,
        transforms: Iterable[TransformLike] = (),
        rules: Iterable[LintRule] = (),
        logs_root: str | os.PathLike[str] | None = None,
    ) -> Pipeline:
        """Parse, transform and validate ``source`` (a path or DOT text); raise
        ``ValidationError`` if it has errors. ``handlers`` adds or replaces handler types.

        Codergen nodes run on ``backend``: a ``CodergenBackend``, or the name of one
        (``agent``, ``direct``, ``cli_agent``, ``simulation``) to use by default. Without
        it, ``config`` (default: the ``orchestra.yaml`` found from the pipeline's directory,
        and the ``.env`` beside it) decides, and a node's ``backend=`` attribute overrides
        the default. Raises ``ConfigError`` for a configuration that cannot run, such as an
        LLM backend without a provider key."""
        registry = handlers if isinstance(handlers, HandlerRegistry) else default_registry()
        if handlers is not None and not isinstance(handlers, HandlerRegistry):
            for type_string, handler in handlers.items():
                registry.register(type_string, handler)
        graph, diagnostics = prepare_pipeline(
            source, transforms=transforms, rules=rules, handler_types=list(registry)
        )
        if any(d.severity is Severity.ERROR for d in diagnostics):
            raise ValidationError(diagnostics, file=graph.path)
        return cls(
            graph,
            diagnostics=diagnostics,
            variables=variables,
            store=store,
            config=config,
            backend=backend,
            interviewer=interviewer,
            handlers=registry,
            logs_root=logs_root,
        )

    def events(self) -> AsyncIterator[Event]:
        """Every event of the next ``run``, as an async iterator that ends with the run.
        Call it before ``run`` starts (e.g. in a task group beside it)."""
        return self.bus.events()

    async def run(self, *, on_event: EventCallback | None = None) -> RunResult:
        """Run the pipeline as a new session; returns when it ends. Without a ``store`` given
        to ``load``, the run opens the configured one (``orchestra.store.location``) and
        closes it at the end."""
        try:
            async with _given_or_configured(self._store) as store:
                return await self._run(store, on_event)
        finally:
            self.bus.close()  # events() ends however the run did, even before it began

    async def _run(self, store: Store, on_event: EventCallback | None) -> RunResult:
        # A run directory or a repository that cannot be used stops the run before a
        # session is recorded.
        if self.logs_root is not None:
            check_run_directory(self.logs_root)
        workspaces = await self._open_workspaces(store)
        recorder = await SessionRecorder.start(
            store,
            pipeline=self.graph.name,
            dot_path=str(Path(self.graph.path).resolve()) if self.graph.path else "",
            dot_source=self.graph.source or "",
            goal=self.graph.goal,
            variables=self.variables,
            logs_root=lambda session_id: str(
                (self.logs_root or default_logs_root(session_id, store)).resolve()
            ),
        )
        self.session_id = recorder.session_id
        state = SessionState(session_id=recorder.session_id, variables=self.variables)
        logs_root = self.logs_root or default_logs_root(recorder.session_id, store)
        return await self._execute(recorder, state, logs_root, on_event, workspaces)

    async def _open_workspaces(self, store: Store) -> SessionWorkspaces | None:
        """The session's git workspaces when ``workspace.repos`` is configured: every
        repository opened (or cloned) and checked, no worktree made yet."""
        if not self.config.workspace.repos:
            return None
        from orchestra.workspace import CommitMessages, SessionWorkspaces
        from orchestra.workspace.cleanup import worktrees_directory

        # The configured backend knows the cheap tier and holds the client to call it with.
        summariser = getattr(self.backend, "commit_summariser", None)
        summarise = summariser() if callable(summariser) else None
        workspaces = SessionWorkspaces(
            self.config.workspace.repos,
            pipeline=self.graph.name,
            directory=worktrees_directory(store.location, self.config),
            emit=self.bus.emit,
            messages=CommitMessages(summarise),
            tools=self.config.workspace.tools,
        )
        await workspaces.prepare()
        return workspaces

    async def _execute(
        self,
        recorder: SessionRecorder,
        state: SessionState,
        logs_root: Path,
        on_event: EventCallback | None,
        workspaces: SessionWorkspaces | None = None,
    ) -> RunResult:
        if on_event is not None:
            self.bus.subscribe(on_event)  # for this run only
        fresh = workspaces is not None
        try:
            if workspaces is None:
                workspaces = await self._open_workspaces(recorder.store)
            if workspaces is not None:
                await workspaces.start(recorder.session_id, state.workspace_heads, fresh=fresh)
        except BaseException as err:
            if on_event is not None:
                self.bus.unsubscribe(on_event)
            if fresh and isinstance(err, OrchestraError):
                # A new session that never ran (its branch name is taken, say); a resumed
                # one stays resumable once the repository is usable again.
                with anyio.CancelScope(shield=True):
                    await recorder.ended("fail", str(err))
            raise
        self.workspaces = workspaces
        runner = Runner(
            self.graph,
            recorder=recorder,
            state=state,
            handlers=self.handlers,
            backend=self.backend,
            interviewer=self.interviewer,
            logs_root=logs_root,
            variables=self.variables,
            emit=self.bus.emit,
            sleep=self.sleep,
            workspaces=workspaces,
        )
        try:
            result = await runner.run()
            if workspaces is not None:
                await workspaces.close(result.status)
                result = attrs.evolve(result, workspace=workspaces.describe())
            return result
        finally:
            if on_event is not None:
                self.bus.unsubscribe(on_event)
            self.bus.close()
            if self._configured is not None:
                with anyio.CancelScope(shield=True):
                    await self._configured.aclose()


async def resume(
    session_id: str,
    *,
    store: Store | None = None,
    backend: CodergenBackend | str | None = None,
    interviewer: Interviewer | None = None,
    handlers: Mapping[str, Handler] | HandlerRegistry | None = None,
    force: bool = False,
    turn: int | None = None,
    on_event: EventCallback | None = None,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    config: Config | None = None,
) -> RunResult:
    """Continue a crashed or interrupted session from its last checkpoint, in its own run
    directory. Refuses a finished session, and one whose DOT file changed since it began
    (unless ``force``); if the file is gone, the source recorded in the store is used.

    With ``turn``, continue instead from a turn recorded inside a node (an agent's model
    call or tool result; ``orchestra status SESSION --detail`` lists them), finished or
    not: the session is forked there (the original is kept as it is) and the node goes on
    from its conversation as of that turn. Tool calls whose results are recorded at or
    before the turn do not run again; any asked for and not yet answered by then do. The
    fork writes into the original's run directory; ``RunResult.session_id`` is its id.

    ``config`` as for ``Pipeline.load`` (default: the ``orchestra.yaml`` found from the
    pipeline's file). In a git workspace the worktrees are put back where the session's
    last recorded turn left them (with ``turn``, that turn: the fork's branch starts there)."""
    how = _How(backend, interviewer, handlers, force, on_event, sleep, config)
    async with _given_or_configured(store) as opened:
        return await _resume(opened, session_id, how, turn)


async def _resume(store: Store, session_id: str, how: _How, turn: int | None) -> RunResult:
    state = await load_session(store, session_id)
    if turn is not None:
        return await _resume_at_turn(store, state, turn, how)
    if state.ended in ("success", "fail"):
        raise ResumeRefused(
            f"session {session_id} already finished ({state.ended}); nothing to resume"
        )
    logs_root = (
        Path(state.logs_root) if state.logs_root else default_logs_root(state.session_id, store)
    )
    return await _continue(store, state, logs_root, how)


async def replay(
    session_id: str,
    checkpoint_turn: int,
    *,
    store: Store | None = None,
    backend: CodergenBackend | str | None = None,
    interviewer: Interviewer | None = None,
    handlers: Mapping[str, Handler] | HandlerRegistry | None = None,
    force: bool = False,
    logs_root: str | os.PathLike[str] | None = None,
    on_event: EventCallback | None = None,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    config: Config | None = None,
) -> RunResult:
    """Fork a session at one of its checkpoints and run the fork from there, as a new
    session with its own run directory (``.orchestra/runs/NEW`` unless ``logs_root``). The
    fork shares the original's turns up to that checkpoint (on CXDB an O(1) fork, nothing
    copied); the original session is untouched. ``orchestra status SESSION --detail`` lists
    the checkpoint turn ids. The DOT file check is as for ``resume``. In a git workspace the
    fork works on a branch of its own, made at the worktree heads of that checkpoint; the
    original's branch is left as it is."""
    how = _How(backend, interviewer, handlers, force, on_event, sleep, config)
    root = Path(logs_root) if logs_root is not None else None
    async with _given_or_configured(store) as opened:
        return await _replay(opened, session_id, checkpoint_turn, root, how)


async def _replay(
    store: Store, session_id: str, checkpoint_turn: int, logs_root: Path | None, how: _How
) -> RunResult:
    original = await load_session(store, session_id)
    turns = [turn for turn, _, _ in original.checkpoints]
    if checkpoint_turn not in turns:
        listed = ", ".join(f"{turn} ({node})" for turn, node, _ in original.checkpoints)
        raise ResumeRefused(
            f"turn {checkpoint_turn} is not a checkpoint of session {session_id}; "
            f"its checkpoints are: {listed or 'none yet'}"
        )
    fork = await store.fork_context(checkpoint_turn)
    state = await load_session(store, str(fork.context_id))
    if not state.next_node:
        raise ResumeRefused(
            f"turn {checkpoint_turn} is session {session_id}'s last checkpoint, taken as it "
            "ended: there is nothing after it to run; pick an earlier one"
        )
    root = logs_root if logs_root is not None else default_logs_root(state.session_id, store)
    # The fork shares the original's first turn, which names the original's run directory:
    # record the replay's own, so a crash during the replay resumes into the right place.
    await SessionRecorder(store, fork.context_id).record(
        "",
        SESSION_KIND,
        {
            "logs_root": str(root.resolve()),
            "replay_of": session_id,
            "checkpoint": checkpoint_turn,
        },
    )
    state = await load_session(store, str(fork.context_id))
    return await _continue(store, state, root, how)


async def _resume_at_turn(store: Store, original: SessionState, turn: int, how: _How) -> RunResult:
    records = {turn_id: (node, kind) for turn_id, node, kind, _ in original.records}
    if turn not in records or records[turn][1] == SESSION_KIND:
        listed = ", ".join(
            f"{turn_id} ({node} {kind})"
            for turn_id, node, kind, _ in original.records[-8:]
            if kind != SESSION_KIND
        )
        raise ResumeRefused(
            f"turn {turn} is not a turn recorded inside a node of session "
            f"{original.session_id}; `orchestra status {original.session_id} --detail` lists "
            f"them (the latest: {listed or 'none'})"
        )
    fork = await store.fork_context(turn)
    root = (
        Path(original.logs_root)
        if original.logs_root
        else default_logs_root(original.session_id, store)
    )
    await SessionRecorder(store, fork.context_id).record(
        "",
        SESSION_KIND,
        {"logs_root": str(root.resolve()), "replay_of": original.session_id, "turn": turn},
    )
    state = await load_session(store, str(fork.context_id))
    return await _continue(store, state, root, how)


@attrs.frozen
class _How:
    """How a resumed or replayed session runs on: what ``resume`` and ``replay`` take."""

    backend: CodergenBackend | str | None
    interviewer: Interviewer | None
    handlers: Mapping[str, Handler] | HandlerRegistry | None
    force: bool
    on_event: EventCallback | None
    sleep: Callable[[float], Awaitable[None]]
    config: Config | None = None


@contextlib.asynccontextmanager
async def _given_or_configured(store: Store | None) -> AsyncIterator[Store]:
    """``store`` if given; else the configured one, opened here and closed after."""
    if store is not None:
        yield store
        return
    opened = await open_store()
    try:
        yield opened
    finally:
        with anyio.CancelScope(shield=True):
            await opened.close()


async def _continue(store: Store, state: SessionState, logs_root: Path, how: _How) -> RunResult:
    """Run a session on from the state its turns fold into."""
    source = await _resume_source(store, state, how.force)
    pipeline = Pipeline.load(
        source,
        variables=state.variables,
        store=store,
        config=how.config,
        backend=how.backend,
        interviewer=how.interviewer,
        handlers=how.handlers,
    )
    pipeline.sleep = how.sleep
    recorder = SessionRecorder(store, int(state.session_id))
    # This process runs the session now: `orchestra status` and `attach` see it alive.
    taken_up = {"pid": os.getpid(), "host": socket.gethostname()}
    await recorder.take_up(state, taken_up)
    state.apply_session(taken_up)
    pipeline.session_id = state.session_id
    if state.restarts:
        logs_root = logs_root / f"restart-{state.restarts}"
    return await pipeline._execute(recorder, state, logs_root, how.on_event)


def check_run_directory(path: Path) -> None:
    """``path`` is a directory this process can write in (made if missing), else a
    ``RunDirectoryError`` saying what is wrong with it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise RunDirectoryError(f"run directory {path} exists and is not a directory") from None
    except OSError as err:
        raise RunDirectoryError(
            f"run directory {path} cannot be made: {err.strerror or err}"
        ) from None
    if not path.is_dir():
        raise RunDirectoryError(f"run directory {path} exists and is not a directory")
    if not os.access(path, os.W_OK | os.X_OK):
        raise RunDirectoryError(f"run directory {path} is not writable")


async def _resume_source(store: Store, state: SessionState, force: bool) -> str:
    path = Path(state.dot_path) if state.dot_path else None
    if path is not None and path.is_file():
        current = path.read_bytes()
        if content_hash(current).hex() == state.dot_hash or force:
            return str(path)
        raise ResumeRefused(
            f"{path} changed since session {state.session_id} began; resuming could take "
            "paths the recorded state does not match. Restore the file, or pass --force "
            "to resume with the file as it is now"
        )
    recorded = await store.get_blob(state.dot_blob)
    return recorded.decode("utf-8")
