"""What a model call costs, in US dollars, from a table of list prices per million tokens.

The table ships as ``prices.json`` beside this module (its ``as_of`` says when the prices
were taken); ``orchestra.yaml``'s ``prices`` adds models or replaces their entries. A model
the table does not have costs None, never a guess. A dated model id is priced as the model
it is a snapshot of (``claude-sonnet-4-5-20250929`` as ``claude-sonnet-4-5``,
``gpt-4o-2024-08-06`` as ``gpt-4o``) unless the table lists the snapshot itself.

Providers count cached prompt tokens differently: Anthropic's ``input_tokens`` leaves out
the tokens read from and written to the cache, OpenAI's includes them. :meth:`Prices.cost`
prices each token once either way.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import attrs

from orchestra.config.converter import CONVERTER, describe, problems
from orchestra.config.load import read_yaml
from orchestra.config.model import ModelPrice
from orchestra.config.models import infer_provider
from orchestra.errors import ConfigError
from orchestra.llm.types import Usage

__all__ = ["PRICES_FILE", "ModelPrice", "Prices", "load_prices"]

PRICES_FILE = "prices.json"
"""The bundled price table, a resource of this package."""

_PER_TOKENS = 1_000_000
# Whose usage counts cache reads and writes inside input_tokens.
_CACHE_INSIDE_INPUT = frozenset({"openai"})
# A snapshot's date after its model id: -20250929 (Anthropic), -2024-08-06 (OpenAI), or
# @20250929 (Anthropic models on Vertex AI).
_DATED = re.compile(r"(?P<model>.+)[-@](?:\d{8}|\d{4}-\d{2}-\d{2})")


@attrs.frozen
class Prices:
    """Prices by model id; ``as_of`` is the date of the bundled table's prices."""

    models: Mapping[str, ModelPrice] = attrs.field(factory=dict)
    as_of: str | None = None

    def price(self, model: str) -> ModelPrice | None:
        """The price of ``model``, or of the model a dated id is a snapshot of; None when
        the table has neither."""
        if model in self.models:
            return self.models[model]
        dated = _DATED.fullmatch(model)
        return self.models.get(dated["model"]) if dated else None

    def cost(self, model: str, usage: Usage, *, provider: str | None = None) -> float | None:
        """What ``usage`` of ``model`` costs in US dollars; None when the model's price is
        not known.

        ``provider`` is whose adapter reported ``usage`` (default: the one ``model``'s id
        names): it says whether ``input_tokens`` already includes the cached tokens. Cached
        tokens of a model without a cache price cost what input does; reasoning tokens are
        part of ``output_tokens`` and are not counted again.
        """
        price = self.price(model)
        if price is None:
            return None
        read = usage.cache_read_tokens or 0
        write = usage.cache_write_tokens or 0
        fresh = usage.input_tokens
        if (provider or infer_provider(model)) in _CACHE_INSIDE_INPUT:
            fresh = max(fresh - read - write, 0)
        dollars = (
            fresh * price.input
            + read * _or(price.cache_read, price.input)
            + write * _or(price.cache_write, price.input)
            + usage.output_tokens * price.output
        )
        return dollars / _PER_TOKENS


def load_prices(override: Mapping[str, Any] | Path | None = None) -> Prices:
    """The bundled price table, with ``override``'s models added or replacing theirs.

    ``override`` is ``orchestra.yaml``'s ``prices``: a map of model id to ``{input, output,
    cache_read, cache_write}`` (US dollars per million tokens; the cache prices optional),
    or a YAML or JSON file holding such a map (at its top, or under ``models`` as in
    ``prices.json``). An entry replaces the bundled one whole. Mistakes are ConfigErrors
    naming the key (and the file).
    """
    bundled = _bundled()
    if override is None:
        return bundled
    if isinstance(override, Path):
        added = _from_file(override)
    else:
        added = _structure(override, prefix=("prices",), path=None)
    return attrs.evolve(bundled, models={**bundled.models, **added})


@functools.cache
def _bundled() -> Prices:
    text = resources.files(__package__ or "orchestra.llm").joinpath(PRICES_FILE).read_text("utf-8")
    data = json.loads(text)
    models = _structure(data["models"], prefix=("models",), path=PRICES_FILE)
    return Prices(models=models, as_of=data.get("as_of"))


def _from_file(path: Path) -> dict[str, ModelPrice]:
    data = read_yaml(path, missing="prices file not found")
    if data is None:
        return {}
    if isinstance(data, Mapping) and isinstance(data.get("models"), Mapping):
        return _structure(data["models"], prefix=("models",), path=str(path))
    return _structure(data, prefix=(), path=str(path))


def _structure(data: object, *, prefix: tuple[str, ...], path: str | None) -> dict[str, ModelPrice]:
    """``data`` as prices by model id, through the configuration's converter."""
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"expected a map of model id to prices, got {describe(data)}",
            path=path,
            key=".".join(prefix) or None,
        )
    given = {model: p for model, p in data.items() if isinstance(p, ModelPrice)}
    raw = {model: p for model, p in data.items() if not isinstance(p, ModelPrice)}
    try:
        structured: dict[str, ModelPrice] = CONVERTER.structure(raw, dict[str, ModelPrice])
    except Exception as err:
        found = list(problems(err))
        key, message = found[0] if found else ((), str(err))
        if len(found) > 1:
            message += f" (and {len(found) - 1} more)"
        raise ConfigError(message, path=path, key=".".join((*prefix, *key)) or None) from None
    prices = {**given, **structured}
    for model, price in prices.items():
        for field in attrs.fields(ModelPrice):
            value = getattr(price, field.name)
            if value is not None and value < 0:
                raise ConfigError(
                    "expected a price of zero or more",
                    path=path,
                    key=".".join((*prefix, str(model), field.name)),
                )
    return prices


def _or(value: float | None, default: float) -> float:
    return default if value is None else value
