"""The CXDB store: Orchestra's durable state on a shared CXDB server (``reference/cxdb.md``).

``protocol`` encodes and decodes the binary protocol's frames; ``fake`` is an in-process
server speaking that protocol and the HTTP routes Orchestra reads, for tests and benchmarks.
"""
