"""Durable session state: the ``Store`` protocol and its embedded (SQLite) implementation."""

from orchestra.store.base import ContextHead as ContextHead
from orchestra.store.base import ContextSummary as ContextSummary
from orchestra.store.base import Store as Store
from orchestra.store.base import TurnRecord as TurnRecord
from orchestra.store.embedded import EmbeddedStore as EmbeddedStore

__all__ = ["ContextHead", "ContextSummary", "EmbeddedStore", "Store", "TurnRecord"]
