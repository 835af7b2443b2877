"""The coding agent an LLM node runs: a model in a loop, calling tools inside one workspace.

``tools`` holds the standard tools (read_file, write_file, edit_file, shell, grep, glob) of
the coding-agent loop spec (digested in ``llm-sdks.md`` §3.5-§3.7), every file tool confined
to the node's workspace directory, with the spec's output truncation: the model sees the
truncated text, the logs get the full output.
"""
