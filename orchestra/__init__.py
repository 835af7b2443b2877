"""Orchestra runs multi-stage AI workflows written as Graphviz DOT files.

The pipeline language: :func:`parse_dot` reads DOT into a frozen :class:`Graph`,
:func:`apply_transforms` expands ``$goal`` and applies the model stylesheet, and
:func:`validate` lints the result (:func:`prepare_pipeline` does all three). Running:
:meth:`Pipeline.load` prepares a pipeline, ``await pipeline.run()`` executes it as a durable
session, and :func:`resume` continues one after a crash or interrupt.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestra import errors as errors
    from orchestra.attributes import Duration as Duration
    from orchestra.conditions import evaluate_condition as evaluate_condition
    from orchestra.conditions import parse_condition as parse_condition
    from orchestra.dot import parse_dot as parse_dot
    from orchestra.engine.context import Context as Context
    from orchestra.engine.runner import RunResult as RunResult
    from orchestra.follow import follow as follow
    from orchestra.graph import Edge as Edge
    from orchestra.graph import Graph as Graph
    from orchestra.graph import Node as Node
    from orchestra.graph import SourceLocation as SourceLocation
    from orchestra.handlers.base import Handler as Handler
    from orchestra.handlers.base import StageRun as StageRun
    from orchestra.handlers.base import TerminalError as TerminalError
    from orchestra.outcome import Outcome as Outcome
    from orchestra.outcome import StageStatus as StageStatus
    from orchestra.pipeline import Pipeline as Pipeline
    from orchestra.pipeline import prepare_pipeline as prepare_pipeline
    from orchestra.pipeline import replay as replay
    from orchestra.pipeline import resume as resume
    from orchestra.store.location import open_store as open_store
    from orchestra.transforms import Transform as Transform
    from orchestra.transforms import apply_transforms as apply_transforms
    from orchestra.validation import Diagnostic as Diagnostic
    from orchestra.validation import LintRule as LintRule
    from orchestra.validation import Severity as Severity
    from orchestra.validation import lint_rule as lint_rule
    from orchestra.validation import validate as validate
    from orchestra.validation import validate_or_raise as validate_or_raise

# The names load on first use, so that `import orchestra.dot` (what `orchestra compile`
# needs) does not import the engine, the store and the backends as well.
_WHERE: dict[str, tuple[str, str | None]] = {
    "errors": ("orchestra.errors", None),
    "Duration": ("orchestra.attributes", "Duration"),
    "evaluate_condition": ("orchestra.conditions", "evaluate_condition"),
    "parse_condition": ("orchestra.conditions", "parse_condition"),
    "parse_dot": ("orchestra.dot", "parse_dot"),
    "Context": ("orchestra.engine.context", "Context"),
    "RunResult": ("orchestra.engine.runner", "RunResult"),
    "follow": ("orchestra.follow", "follow"),
    "Edge": ("orchestra.graph", "Edge"),
    "Graph": ("orchestra.graph", "Graph"),
    "Node": ("orchestra.graph", "Node"),
    "SourceLocation": ("orchestra.graph", "SourceLocation"),
    "Handler": ("orchestra.handlers.base", "Handler"),
    "StageRun": ("orchestra.handlers.base", "StageRun"),
    "TerminalError": ("orchestra.handlers.base", "TerminalError"),
    "Outcome": ("orchestra.outcome", "Outcome"),
    "StageStatus": ("orchestra.outcome", "StageStatus"),
    "Pipeline": ("orchestra.pipeline", "Pipeline"),
    "prepare_pipeline": ("orchestra.pipeline", "prepare_pipeline"),
    "replay": ("orchestra.pipeline", "replay"),
    "resume": ("orchestra.pipeline", "resume"),
    "open_store": ("orchestra.store.location", "open_store"),
    "Transform": ("orchestra.transforms", "Transform"),
    "apply_transforms": ("orchestra.transforms", "apply_transforms"),
    "Diagnostic": ("orchestra.validation", "Diagnostic"),
    "LintRule": ("orchestra.validation", "LintRule"),
    "Severity": ("orchestra.validation", "Severity"),
    "lint_rule": ("orchestra.validation", "lint_rule"),
    "validate": ("orchestra.validation", "validate"),
    "validate_or_raise": ("orchestra.validation", "validate_or_raise"),
}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'orchestra' has no attribute {name!r}")
    import importlib

    module = importlib.import_module(where[0])
    value = module if where[1] is None else getattr(module, where[1])
    globals()[name] = value
    return value


__version__ = "0.1.0"

__all__ = [
    "Context",
    "Diagnostic",
    "Duration",
    "Edge",
    "Graph",
    "Handler",
    "LintRule",
    "Node",
    "Outcome",
    "Pipeline",
    "RunResult",
    "Severity",
    "SourceLocation",
    "StageRun",
    "StageStatus",
    "TerminalError",
    "Transform",
    "apply_transforms",
    "errors",
    "evaluate_condition",
    "follow",
    "lint_rule",
    "open_store",
    "parse_condition",
    "parse_dot",
    "prepare_pipeline",
    "replay",
    "resume",
    "validate",
    "validate_or_raise",
]
