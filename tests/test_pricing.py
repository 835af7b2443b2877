"""Model prices: the bundled table, cost arithmetic, dated ids and overrides."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from orchestra.config import ConfigError, ModelPrice, load_config
from orchestra.llm.pricing import PRICES_FILE, Prices, load_prices
from orchestra.llm.types import Usage

MILLION = 1_000_000

# Round figures, so that each expected cost can be read off the test.
TABLE = Prices(
    models={
        "claude-test": ModelPrice(input=3, output=15, cache_read=0.3, cache_write=3.75),
        "gpt-test": ModelPrice(input=2, output=8, cache_read=0.5),
        "plain-test": ModelPrice(input=1, output=2),
    }
)


class TestBundledTable:
    def test_ships_as_package_data(self) -> None:
        """prices.json is a resource of orchestra.llm, so it is in the wheel."""
        text = resources.files("orchestra.llm").joinpath(PRICES_FILE).read_text("utf-8")
        assert "models" in json.loads(text)

    def test_is_dated(self) -> None:
        """The bundled table says when its prices were taken."""
        as_of = load_prices().as_of
        assert as_of is not None
        assert len(as_of) == len("2025-11-24")

    @pytest.mark.parametrize(
        "model", ["claude-opus-4-5", "claude-sonnet-4-5", "claude-haiku-4-5", "gpt-5", "o3"]
    )
    def test_has_current_models(self, model: str) -> None:
        """Current Anthropic and OpenAI models have prices."""
        assert load_prices().price(model) is not None

    def test_every_price_is_sane(self) -> None:
        """Output never costs less than input, and a cache read never more."""
        for model, price in load_prices().models.items():
            assert 0 < price.input <= price.output, model
            assert price.cache_read is None or price.cache_read <= price.input, model

    def test_sonnet_4_5_list_price(self) -> None:
        """Claude Sonnet 4.5 costs $3 in and $15 out per million tokens."""
        cost = load_prices().cost("claude-sonnet-4-5", Usage(MILLION, MILLION))
        assert cost == pytest.approx(18.0)


class TestCost:
    def test_input_and_output(self) -> None:
        """Input and output tokens are priced per million."""
        assert TABLE.cost("plain-test", Usage(500_000, 250_000)) == pytest.approx(1.0)

    def test_anthropic_cache_tokens_are_beside_input(self) -> None:
        """Anthropic's input_tokens exclude cached tokens, so each count is priced as is."""
        usage = Usage(1000, 100, cache_read_tokens=2000, cache_write_tokens=500)
        expected = (1000 * 3 + 100 * 15 + 2000 * 0.3 + 500 * 3.75) / MILLION
        assert TABLE.cost("claude-test", usage, provider="anthropic") == pytest.approx(expected)

    def test_openai_cache_reads_are_inside_input(self) -> None:
        """OpenAI's input_tokens include the cached ones, which are priced once, as reads."""
        usage = Usage(3000, 100, cache_read_tokens=2000)
        expected = (1000 * 2 + 2000 * 0.5 + 100 * 8) / MILLION
        assert TABLE.cost("gpt-test", usage, provider="openai") == pytest.approx(expected)

    def test_provider_defaults_to_the_model_family(self) -> None:
        """Without a provider, a gpt-* id is counted the OpenAI way."""
        usage = Usage(3000, 0, cache_read_tokens=2000)
        assert TABLE.cost("gpt-test", usage) == TABLE.cost("gpt-test", usage, provider="openai")

    def test_missing_cache_price_costs_input(self) -> None:
        """Cached tokens of a model without cache prices cost what input does."""
        usage = Usage(1000, 0, cache_read_tokens=1000, cache_write_tokens=1000)
        assert TABLE.cost("plain-test", usage, provider="anthropic") == pytest.approx(
            3000 / MILLION
        )

    def test_openai_cache_writes_without_price_cost_input(self) -> None:
        """An OpenAI cache write without a price is input, counted once."""
        usage = Usage(3000, 0, cache_read_tokens=1000, cache_write_tokens=1000)
        expected = (2000 * 2 + 1000 * 0.5) / MILLION
        assert TABLE.cost("gpt-test", usage, provider="openai") == pytest.approx(expected)

    def test_reasoning_tokens_are_not_counted_twice(self) -> None:
        """Reasoning tokens are part of output_tokens already."""
        assert TABLE.cost("plain-test", Usage(0, 1000, reasoning_tokens=800)) == pytest.approx(
            2000 / MILLION
        )

    def test_no_usage_costs_nothing(self) -> None:
        """A known model with no tokens costs zero, not None."""
        assert TABLE.cost("claude-test", Usage()) == 0.0

    def test_unknown_model_has_no_cost(self) -> None:
        """A model the table does not have costs None, never a guess."""
        assert TABLE.cost("mystery-model", Usage(1000, 1000)) is None
        assert load_prices().cost("claude-opus-99", Usage(1000, 1000)) is None


class TestLookup:
    def test_dated_anthropic_id(self) -> None:
        """claude-sonnet-4-5-20250929 is priced as claude-sonnet-4-5."""
        prices = load_prices()
        assert prices.price("claude-sonnet-4-5-20250929") == prices.price("claude-sonnet-4-5")

    def test_dated_openai_id(self) -> None:
        """gpt-4o-2024-08-06 is priced as gpt-4o."""
        prices = load_prices()
        assert prices.price("gpt-4o-2024-08-06") == prices.price("gpt-4o")

    def test_listed_snapshot_wins(self) -> None:
        """A snapshot with a price of its own is not priced as its model."""
        prices = load_prices()
        assert prices.price("gpt-4o-2024-05-13") != prices.price("gpt-4o")

    @pytest.mark.parametrize("model", ["claude-sonnet-4-5-beta", "gpt-4o-mini-x", "gpt-4o2"])
    def test_other_suffixes_do_not_match(self, model: str) -> None:
        """Only a date makes an id a snapshot: other suffixes are other models."""
        assert Prices(models={"claude-sonnet-4-5": TABLE.models["plain-test"]}).price(model) is None

    def test_newer_version_is_not_the_older_model(self) -> None:
        """claude-opus-4-6 is not priced as claude-opus-4 (nor any shorter id)."""
        prices = Prices(models={"claude-opus-4": ModelPrice(input=15, output=75)})
        assert prices.price("claude-opus-4-6") is None


class TestOverride:
    def test_mapping_adds_a_model(self) -> None:
        """A model in the override is priced, and the bundled ones still are."""
        prices = load_prices({"local-llama": {"input": 0, "output": 0.5}})
        assert prices.cost("local-llama", Usage(0, MILLION)) == pytest.approx(0.5)
        assert prices.price("claude-sonnet-4-5") is not None

    def test_mapping_replaces_an_entry_whole(self) -> None:
        """An override replaces the bundled entry, cache prices included."""
        prices = load_prices({"claude-sonnet-4-5": {"input": 1, "output": 2}})
        assert prices.price("claude-sonnet-4-5") == ModelPrice(input=1, output=2)
        assert prices.price("claude-sonnet-4-5-20250929") == ModelPrice(input=1, output=2)

    def test_config_prices_are_accepted(self, tmp_path: Path) -> None:
        """orchestra.yaml's prices, already ModelPrice values, override the table."""
        path = tmp_path / "orchestra.yaml"
        path.write_text("prices:\n  my-model: {input: 4, output: 8, cache_read: 1}\n")
        config = load_config(path)
        assert not isinstance(config.prices, Path)
        prices = load_prices(config.prices)
        assert prices.price("my-model") == ModelPrice(input=4, output=8, cache_read=1)

    def test_bundled_table_is_not_changed(self) -> None:
        """Overriding returns a new table; the bundled one keeps its prices."""
        load_prices({"claude-haiku-4-5": {"input": 99, "output": 99}})
        assert load_prices().price("claude-haiku-4-5") != ModelPrice(input=99, output=99)

    def test_yaml_file(self, tmp_path: Path) -> None:
        """A prices file holds the same map as orchestra.yaml's prices."""
        path = tmp_path / "prices.yaml"
        path.write_text("my-model:\n  input: 1\n  output: 2\n")
        assert load_prices(path).price("my-model") == ModelPrice(input=1, output=2)

    def test_file_shaped_like_prices_json(self, tmp_path: Path) -> None:
        """A file shaped like prices.json (the map under models) is read too."""
        path = tmp_path / "prices.json"
        path.write_text(
            json.dumps({"as_of": "2026-01-01", "models": {"m": {"input": 1, "output": 1}}})
        )
        assert load_prices(path).price("m") == ModelPrice(input=1, output=1)

    def test_config_prices_file(self, tmp_path: Path) -> None:
        """A prices file named in orchestra.yaml is loaded from beside it."""
        (tmp_path / "prices.yaml").write_text("my-model: {input: 1, output: 3}\n")
        config_path = tmp_path / "orchestra.yaml"
        config_path.write_text("prices: prices.yaml\n")
        prices = load_prices(load_config(config_path).prices)
        assert prices.price("my-model") == ModelPrice(input=1, output=3)

    def test_bad_value_names_the_key(self) -> None:
        """A price that is not a number is a ConfigError naming the model and field."""
        with pytest.raises(ConfigError) as caught:
            load_prices({"m": {"input": "cheap", "output": 1}})
        assert caught.value.key == "prices.m.input"

    def test_missing_output_names_the_key(self) -> None:
        """An entry without its output price is incomplete."""
        with pytest.raises(ConfigError) as caught:
            load_prices({"m": {"input": 1}})
        assert caught.value.key == "prices.m.output"

    def test_negative_price(self) -> None:
        """A negative price is refused."""
        with pytest.raises(ConfigError) as caught:
            load_prices({"m": {"input": 1, "output": 1, "cache_read": -1}})
        assert caught.value.key == "prices.m.cache_read"

    def test_unknown_field(self, tmp_path: Path) -> None:
        """A misspelt field in a prices file is named with the file."""
        path = tmp_path / "prices.yaml"
        path.write_text("m: {input: 1, output: 1, cache_reed: 1}\n")
        with pytest.raises(ConfigError) as caught:
            load_prices(path)
        assert (caught.value.path, caught.value.key) == (str(path), "m.cache_reed")
        assert "did you mean 'cache_read'" in str(caught.value)

    def test_missing_file(self, tmp_path: Path) -> None:
        """A prices file that is not there is a ConfigError naming it."""
        with pytest.raises(ConfigError) as caught:
            load_prices(tmp_path / "nope.yaml")
        assert caught.value.path == str(tmp_path / "nope.yaml")

    def test_file_syntax_error_does_not_quote_it(self, tmp_path: Path) -> None:
        """A prices file that is not YAML gives its line, not its text."""
        path = tmp_path / "prices.yaml"
        path.write_text('m: {input: 1, output: "sk-secret\n')
        with pytest.raises(ConfigError) as caught:
            load_prices(path)
        assert caught.value.line is not None
        assert "sk-secret" not in str(caught.value)


class TestImports:
    def test_no_provider_sdk_on_import(self) -> None:
        """Importing the price table imports no provider SDK."""
        code = (
            "import sys, orchestra.llm.pricing; "
            "print('anthropic' in sys.modules or 'openai' in sys.modules)"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        assert result.stdout.strip() == "False"
