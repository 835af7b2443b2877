"""How long Orchestra takes to read a pipeline, against pydot alone on the same text.

For generated pipelines of 100, 1,000 and 5,000 nodes, prints the time of
parse + transform + validate, split into its phases, and its ratio to
``pydot.graph_from_dot_data`` on the same text, measured in the same process.

    uv run python benchmarks/bench_parse.py [--sizes 100,1000,5000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable
from typing import Any

import pydot

from orchestra.dot.lexer import SourceText
from orchestra.dot.parser import _GraphBuilder, _pydot_parse
from orchestra.dot.subset import check_subset
from orchestra.transforms import apply_transforms
from orchestra.validation import validate


def generate(nodes: int) -> str:
    """A pipeline shaped like real ones: stages in subgraphs with defaults, prompts with
    $goal, a stylesheet, conditional loops back, comments, typed attributes."""
    lines = [
        f"// generated pipeline with {nodes} nodes",
        "digraph bench {",
        "    graph [",
        '        goal="Ship the benchmark feature",',
        "        default_max_retries=1,",
        '        model_stylesheet="* { llm_model: worker; } .review { llm_model: smart; }"',
        "    ]",
        "    start [shape=Mdiamond]",
        "    exit  [shape=Msquare]",
    ]
    per_group = 50
    for group in range(0, nodes, per_group):
        lines.append(f"    subgraph cluster_{group} {{")
        lines.append(f'        label="Stage {group // per_group}"')
        lines.append('        node [timeout="15m", class="review"]')
        for i in range(group, min(group + per_group, nodes)):
            lines.append(
                f'        n{i} [label="Step {i}", prompt="Do step {i} of $goal",\n'
                f"              max_retries=2, llm_provider=anthropic]  /* step {i} */"
            )
        lines.append("    }")
    lines.append("    start -> n0")
    for i in range(nodes - 1):
        lines.append(f'    n{i} -> n{i + 1} [label="next", condition="outcome=success"]')
        if i % 10 == 9:
            lines.append(
                f'    n{i} -> n{i - 5} [label="again", condition="outcome!=success", weight=1]'
            )
    lines.append(f"    n{nodes - 1} -> exit")
    lines.append("}")
    return "\n".join(lines) + "\n"


def best_of(repeat: int, action: Callable[[], Any]) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times)


def phases(text: str) -> dict[str, float]:
    """One run of Orchestra's pipeline, timed per phase."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    src = SourceText(text, "bench.dot")
    checked = check_subset(src)
    timings["subset check"] = time.perf_counter() - started
    started = time.perf_counter()
    dot = _pydot_parse(checked, src)
    timings["pydot"] = time.perf_counter() - started
    started = time.perf_counter()
    graph = _GraphBuilder(src, checked, None).build(dot)
    timings["build"] = time.perf_counter() - started
    started = time.perf_counter()
    graph = apply_transforms(graph)
    timings["transforms"] = time.perf_counter() - started
    started = time.perf_counter()
    diagnostics = validate(graph)
    timings["validate"] = time.perf_counter() - started
    assert not [d for d in diagnostics if d.severity.name == "ERROR"], diagnostics[:3]
    assert len(graph.nodes) >= 2
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,5000")
    parser.add_argument("--repeat", type=int, default=3, help="runs per size (best is kept)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    header = (
        f"{'nodes':>6} {'lines':>7} {'pydot alone':>12} {'orchestra':>10} {'ratio':>6}   "
        "phases (subset check / pydot / build / transforms / validate)"
    )
    print(header)
    print("-" * len(header))
    for size in sizes:
        text = generate(size)
        repeat = args.repeat if size <= 1000 else 1
        baseline = best_of(repeat, lambda text=text: pydot.graph_from_dot_data(text))
        runs = [phases(text) for _ in range(repeat)]
        best = min(runs, key=lambda r: sum(r.values()))
        total = sum(best.values())
        split = " / ".join(f"{best[k] * 1000:.0f}" for k in best)
        print(
            f"{size:>6} {text.count(chr(10)):>7} {baseline:>11.3f}s {total:>9.3f}s "
            f"{total / baseline:>5.2f}x   {split} ms"
        )
    print()
    print("ratio = orchestra (parse + transform + validate) / pydot.graph_from_dot_data alone")


if __name__ == "__main__":
    main()
