"""DOT text -> ``Graph``: pydot underneath, the Attractor subset enforced on top."""

from orchestra.dot.parser import parse_dot as parse_dot
from orchestra.dot.parser import read_pipeline_text as read_pipeline_text

__all__ = ["parse_dot", "read_pipeline_text"]
