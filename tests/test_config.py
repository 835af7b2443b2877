"""orchestra.yaml: discovery, loading, mistakes reported by file:line and key, .env, models."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from orchestra.config import (
    AgentConfig,
    Config,
    ConfigError,
    CxdbConfig,
    ModelPrice,
    ProviderConfig,
    Providers,
    RepoConfig,
    ResolvedModel,
    ToolHooks,
    find_config,
    load_config,
    load_env,
    resolve_model,
)

FULL_EXAMPLE = """\
backend: agent

providers:
  default: anthropic
  anthropic:
    models:
      smart: claude-opus-4-20250514
      worker: claude-sonnet-4-20250514
      cheap: claude-haiku-3-20250514
  openai:
    base_url: http://localhost:8000/v1
    models:
      smart: gpt-4o
      worker: gpt-4o-mini

cxdb:
  url: http://localhost:9010

workspace:
  repos:
    backend:
      path: ../backend
      branch_prefix: bots/
      push: on_checkpoint

agents:
  security-reviewer:
    role: prompts/roles/pr-reviewer.yaml
    persona: prompts/personas/security-specialist.yaml
    personality: prompts/personalities/critic.yaml
    task: prompts/tasks/review-security.yaml
    model: smart
    reasoning_effort: medium

tools:
  shell_timeout: 2m
  hooks:
    pre: ./check-tool.sh
    post: ./log-tool.sh

prices:
  claude-opus-4-20250514: {input: 15, output: 75, cache_read: 1.5}
"""

LAYERS = (
    "prompts/roles/pr-reviewer.yaml",
    "prompts/personas/security-specialist.yaml",
    "prompts/personalities/critic.yaml",
    "prompts/tasks/review-security.yaml",
)


def write(directory: Path, text: str, name: str = "orchestra.yaml") -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def mistake(directory: Path, text: str) -> ConfigError:
    """The ConfigError that loading ``text`` as orchestra.yaml raises."""
    path = write(directory, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    return caught.value


def config_with(**providers: ProviderConfig) -> Config:
    return Config(providers=Providers(default=None, by_name=providers))


ANTHROPIC = ProviderConfig(models={"smart": "claude-opus-4", "worker": "claude-sonnet-4"})
OPENAI = ProviderConfig(models={"smart": "gpt-4o", "cheap": "gpt-4o-mini"})


class TestLoading:
    def test_full_example_loads_every_section(self, tmp_path: Path) -> None:
        """Every section of a complete orchestra.yaml lands in the matching value class."""
        for layer in LAYERS:
            write(tmp_path, "x: 1\n", layer)
        path = write(tmp_path, FULL_EXAMPLE)
        (tmp_path / "../backend").mkdir(exist_ok=True)

        config = load_config(path, environ={})

        assert config.backend == "agent"
        assert config.path == path
        assert config.providers.default == "anthropic"
        assert config.providers.by_name["anthropic"].models["cheap"] == "claude-haiku-3-20250514"
        assert config.providers.by_name["openai"] == ProviderConfig(
            models={"smart": "gpt-4o", "worker": "gpt-4o-mini"},
            base_url="http://localhost:8000/v1",
        )
        assert config.cxdb == CxdbConfig(url="http://localhost:9010")
        assert config.workspace.repos["backend"] == RepoConfig(
            path=tmp_path / "../backend", branch_prefix="bots/", push="on_checkpoint"
        )
        assert config.agents["security-reviewer"] == AgentConfig(
            role=tmp_path / LAYERS[0],
            persona=tmp_path / LAYERS[1],
            personality=tmp_path / LAYERS[2],
            task=tmp_path / LAYERS[3],
            model="smart",
            reasoning_effort="medium",
        )
        assert config.tools.shell_timeout == 120.0
        assert config.tools.hooks == ToolHooks(pre="./check-tool.sh", post="./log-tool.sh")
        assert config.prices == {
            "claude-opus-4-20250514": ModelPrice(input=15.0, output=75.0, cache_read=1.5)
        }

    def test_langgraph_backend_means_agent(self, tmp_path: Path) -> None:
        """`backend: langgraph` from older configurations selects Orchestra's own agent."""
        assert load_config(write(tmp_path, "backend: langgraph\n")).backend == "agent"

    def test_prices_file_is_relative_to_the_config(self, tmp_path: Path) -> None:
        """A prices path is resolved against the config file's directory."""
        write(tmp_path, "{}\n", "conf/prices.yaml")
        config = load_config(write(tmp_path, "prices: prices.yaml\n", "conf/orchestra.yaml"))
        assert config.prices == tmp_path / "conf" / "prices.yaml"

    def test_shell_timeout_accepts_plain_seconds(self, tmp_path: Path) -> None:
        """A bare number for shell_timeout is seconds."""
        config = load_config(write(tmp_path, "tools:\n  shell_timeout: 45\n"))
        assert config.tools.shell_timeout == 45.0


class TestDefaults:
    def test_no_file_gives_defaults(self, tmp_path: Path) -> None:
        """Without an orchestra.yaml the defaults apply, and no key means simulation."""
        assert load_config(start=tmp_path, environ={}) == Config(backend="simulation")

    def test_provider_key_makes_the_default_backend_agent(self, tmp_path: Path) -> None:
        """With a provider key in the environment the default backend is the agent."""
        config = load_config(start=tmp_path, environ={"ANTHROPIC_API_KEY": "sk-test"})
        assert config.backend == "agent"

    def test_empty_file_gives_defaults(self, tmp_path: Path) -> None:
        """An empty orchestra.yaml, or one with empty sections, is the defaults."""
        path = write(tmp_path, "agents:\nworkspace:\n")
        assert load_config(path, environ={}) == Config(path=path)

    def test_backend_in_the_file_beats_the_key(self, tmp_path: Path) -> None:
        """A backend the file names is used even when a provider key is set."""
        path = write(tmp_path, "backend: simulation\n")
        assert load_config(path, environ={"OPENAI_API_KEY": "sk-test"}).backend == "simulation"

    def test_repo_defaults(self, tmp_path: Path) -> None:
        """A repo needs only its path: branches under orchestra/, never pushed."""
        (tmp_path / "app").mkdir()
        config = load_config(write(tmp_path, "workspace:\n  repos:\n    app:\n      path: app\n"))
        assert config.workspace.repos["app"] == RepoConfig(path=tmp_path / "app", push="never")

    def test_missing_repo_path_without_remote(self, tmp_path: Path) -> None:
        """A repo path that does not exist, with no remote to clone from, names the key."""
        err = mistake(tmp_path, "workspace:\n  repos:\n    app:\n      path: nowhere\n")
        assert str(err).startswith(f"{tmp_path / 'orchestra.yaml'}:4: workspace.repos.app.path: ")
        assert "does not exist" in str(err)
        assert "workspace.repos.app.remote" in str(err)

    def test_missing_repo_path_with_a_remote_is_cloned_later(self, tmp_path: Path) -> None:
        """A missing path is fine when a remote says where to clone it from."""
        text = "workspace:\n  repos:\n    app:\n      path: app\n      remote: ../up.git\n"
        config = load_config(write(tmp_path, text + "      clone_depth: 1\n"))
        assert config.workspace.repos["app"].remote == str(tmp_path / "../up.git")
        assert config.workspace.repos["app"].clone_depth == 1

    def test_repo_tools_need_a_known_repo(self, tmp_path: Path) -> None:
        """workspace.tools names a configured repository, with a did-you-mean."""
        (tmp_path / "app").mkdir()
        text = "workspace:\n  repos:\n    app:\n      path: app\n  tools:\n    ap:\n"
        err = mistake(tmp_path, text + "      run-tests: pytest\n")
        assert "workspace.tools.ap: unknown repository 'ap'" in str(err)


class TestFindConfig:
    def test_found_from_a_nested_directory(self, tmp_path: Path) -> None:
        """find_config walks up from a nested directory to the nearest orchestra.yaml."""
        path = write(tmp_path, "backend: simulation\n")
        nested = tmp_path / "a" / "b" / "c"
        nested.mkdir(parents=True)
        assert find_config(nested) == path

    def test_nearest_file_wins(self, tmp_path: Path) -> None:
        """An orchestra.yaml nearer the start shadows one further up."""
        write(tmp_path, "backend: simulation\n")
        inner = write(tmp_path, "backend: agent\n", "project/orchestra.yaml")
        assert find_config(tmp_path / "project") == inner

    def test_start_may_be_a_pipeline_file(self, tmp_path: Path) -> None:
        """Starting from a file searches from the file's directory."""
        path = write(tmp_path, "backend: simulation\n")
        dot = write(tmp_path, "digraph G {}\n", "pipelines/review.dot")
        assert find_config(dot) == path

    def test_load_config_searches_from_start(self, tmp_path: Path) -> None:
        """load_config with only start loads the file find_config finds."""
        write(tmp_path, "cxdb:\n  url: cxdb://db:9009\n")
        nested = tmp_path / "deep"
        nested.mkdir()
        assert load_config(start=nested).cxdb.url == "cxdb://db:9009"


class TestMistakes:
    def test_unknown_top_level_key_suggests_the_close_one(self, tmp_path: Path) -> None:
        """A misspelt section is an unknown key with a suggestion, at its line."""
        err = mistake(tmp_path, "cxdb:\n  url: x\nbakend: agent\n")
        assert str(err) == (
            f"{tmp_path / 'orchestra.yaml'}:3: bakend: unknown key; did you mean 'backend'?"
        )
        assert (err.key, err.line) == ("bakend", 3)

    def test_unknown_key_without_a_close_one_lists_the_keys(self, tmp_path: Path) -> None:
        """An unknown key nothing resembles lists the keys the section has."""
        err = mistake(tmp_path, "cxdb:\n  zzz: 1\n")
        assert str(err).endswith(":2: cxdb.zzz: unknown key; expected one of: url")

    def test_unknown_tier_in_an_agent(self, tmp_path: Path) -> None:
        """An agent's misspelt tier is named with the tiers there are."""
        err = mistake(tmp_path, "agents:\n  critic:\n    model: smrt\n")
        assert str(err) == (
            f"{tmp_path / 'orchestra.yaml'}:3: agents.critic.model: unknown tier 'smrt' "
            "(tiers: smart, worker, cheap); did you mean 'smart'?"
        )

    def test_unknown_tier_in_a_provider_map(self, tmp_path: Path) -> None:
        """A provider's models map accepts only tier names as keys."""
        err = mistake(tmp_path, "providers:\n  openai:\n    models:\n      fast: gpt-4o\n")
        assert err.key == "providers.openai.models.fast"
        assert err.line == 4
        assert "unknown tier 'fast' (tiers: smart, worker, cheap)" in str(err)

    def test_list_where_a_map_is_expected(self, tmp_path: Path) -> None:
        """A list given for a map says what was expected and what came."""
        err = mistake(tmp_path, "backend: agent\nagents:\n  - critic\n  - writer\n")
        assert str(err) == f"{tmp_path / 'orchestra.yaml'}:2: agents: expected a map, got a list"

    def test_list_where_a_string_is_expected(self, tmp_path: Path) -> None:
        """A scalar setting is never made from a list by calling str() on it."""
        err = mistake(tmp_path, "cxdb:\n  url: [a, b]\n")
        assert str(err).endswith(":2: cxdb.url: expected a string, got a list")

    def test_bad_push_value(self, tmp_path: Path) -> None:
        """push takes one of its three policies."""
        (tmp_path / "app").mkdir()
        err = mistake(
            tmp_path, "workspace:\n  repos:\n    app:\n      path: app\n      push: always\n"
        )
        assert str(err) == (
            f"{tmp_path / 'orchestra.yaml'}:5: workspace.repos.app.push: unknown push policy "
            "'always' (policies: on_completion, on_checkpoint, never)"
        )

    def test_bad_backend(self, tmp_path: Path) -> None:
        """backend takes one of the four backends."""
        err = mistake(tmp_path, "backend: langchain\n")
        assert str(err).startswith(f"{tmp_path / 'orchestra.yaml'}:1: backend: unknown backend")
        assert "(backends: agent, direct, cli_agent, simulation)" in str(err)

    def test_missing_required_key(self, tmp_path: Path) -> None:
        """A repo without a path names the missing key at its repo's line."""
        err = mistake(tmp_path, "workspace:\n  repos:\n    app:\n      push: never\n")
        assert str(err).endswith(":3: workspace.repos.app.path: missing; this key is required")

    def test_yaml_syntax_error_gives_position_not_text(self, tmp_path: Path) -> None:
        """A syntax error gives file:line:col and the problem, never the file's text."""
        err = mistake(tmp_path, "providers:\n  openai: {base_url: sk-SECRET\nbackend: agent\n")
        assert str(err).startswith(f"{tmp_path / 'orchestra.yaml'}:3:")
        assert (err.line, err.column) == (3, 8)
        assert "SECRET" not in str(err)
        assert "YAML syntax error" in str(err)

    def test_duplicate_key_does_not_quote_values(self, tmp_path: Path) -> None:
        """A duplicated key is reported at its second occurrence without either value."""
        err = mistake(tmp_path, "cxdb:\n  url: sk-ONE\n  url: sk-TWO\n")
        assert err.line == 3
        assert "duplicate key" in str(err)
        assert "sk-" not in str(err)

    def test_missing_agent_layer_file(self, tmp_path: Path) -> None:
        """A prompt layer file that does not exist is reported at load, with its key."""
        err = mistake(
            tmp_path, "agents:\n  critic:\n    model: smart\n    role: roles/critic.yaml\n"
        )
        assert str(err) == (
            f"{tmp_path / 'orchestra.yaml'}:4: agents.critic.role: file not found: "
            f"{tmp_path / 'roles/critic.yaml'}"
        )

    def test_unknown_provider_name(self, tmp_path: Path) -> None:
        """An agent's provider must be configured or one Orchestra has a client for."""
        err = mistake(tmp_path, "agents:\n  critic:\n    provider: antropic\n")
        assert err.key == "agents.critic.provider"
        assert "did you mean 'anthropic'?" in str(err)

    def test_misspelt_default_in_providers(self, tmp_path: Path) -> None:
        """`defualt: anthropic` is a misspelt key, not a provider named defualt."""
        err = mistake(tmp_path, "providers:\n  defualt: anthropic\n")
        assert str(err).endswith(":2: providers.defualt: unknown key; did you mean 'default'?")

    def test_top_level_must_be_a_map(self, tmp_path: Path) -> None:
        """A file that is a list is rejected at line 1."""
        err = mistake(tmp_path, "- backend\n")
        assert str(err).startswith(f"{tmp_path / 'orchestra.yaml'}:1: expected a map of settings")

    def test_first_mistake_in_file_order_with_a_count(self, tmp_path: Path) -> None:
        """With several mistakes the first in the file is reported and the rest counted."""
        err = mistake(tmp_path, "backend: nope\ncxdb: []\nbakend: x\n")
        assert err.line == 1
        assert str(err).endswith("(and 2 more problems)")

    def test_config_error_is_a_value_error(self, tmp_path: Path) -> None:
        """ConfigError is caught by `except ValueError` as well."""
        assert isinstance(mistake(tmp_path, "backend: 3\n"), ValueError)

    def test_explicit_path_that_does_not_exist(self, tmp_path: Path) -> None:
        """Naming a config file that is not there is a ConfigError naming it."""
        with pytest.raises(ConfigError, match="no such file"):
            load_config(tmp_path / "orchestra.yaml")


class TestEnv:
    def test_parses_comments_quotes_and_export(self, tmp_path: Path) -> None:
        """Comments and blank lines are skipped, quotes removed, `export ` allowed."""
        write(
            tmp_path,
            """\
            # provider keys
            ANTHROPIC_API_KEY=sk-ant

            export OPENAI_API_KEY="sk-open # not a comment"
            SINGLE='a b'
            PLAIN = value # a comment
            EMPTY=
            """,
            ".env",
        )
        values = load_env(tmp_path, environ={})
        assert values == {
            "ANTHROPIC_API_KEY": "sk-ant",
            "OPENAI_API_KEY": "sk-open # not a comment",
            "SINGLE": "a b",
            "PLAIN": "value",
            "EMPTY": "",
        }

    def test_does_not_override_the_environment(self, tmp_path: Path) -> None:
        """A variable already set keeps its value; the others are added."""
        write(tmp_path, "A=from-file\nB=from-file\n", ".env")
        environ = {"A": "from-shell"}
        load_env(tmp_path, environ=environ)
        assert environ == {"A": "from-shell", "B": "from-file"}

    def test_no_file_is_nothing(self, tmp_path: Path) -> None:
        """A directory without .env adds nothing."""
        environ: dict[str, str] = {}
        assert load_env(tmp_path, environ=environ) == {}
        assert environ == {}

    def test_bad_line_gives_its_number_not_its_text(self, tmp_path: Path) -> None:
        """A line that is not KEY=VALUE is reported by number without quoting it."""
        write(tmp_path, "A=1\nsk-SECRET\n", ".env")
        with pytest.raises(ConfigError) as caught:
            load_env(tmp_path, environ={})
        assert str(caught.value).startswith(f"{tmp_path / '.env'}:2: expected KEY=VALUE")
        assert "SECRET" not in str(caught.value)

    def test_unclosed_quote_names_the_variable(self, tmp_path: Path) -> None:
        """A quoted value without its closing quote names the variable, not the value."""
        write(tmp_path, 'TOKEN="sk-SECRET\n', ".env")
        with pytest.raises(ConfigError) as caught:
            load_env(tmp_path, environ={})
        assert caught.value.key == "TOKEN"
        assert "SECRET" not in str(caught.value)


class TestModelResolution:
    def test_node_literal_model(self) -> None:
        """A node's literal model id passes through, its provider inferred."""
        config = config_with(anthropic=ANTHROPIC)
        resolved = resolve_model("claude-opus-4-6", None, None, config)
        assert resolved == ResolvedModel("anthropic", "claude-opus-4-6", None, "node")

    def test_node_tier_beats_agent_tier(self) -> None:
        """A node's tier wins over its agent's and resolves through the provider's map."""
        config = config_with(anthropic=ANTHROPIC)
        agent = AgentConfig(model="worker")
        resolved = resolve_model("smart", None, agent, config)
        assert resolved == ResolvedModel("anthropic", "claude-opus-4", "smart", "node")

    def test_agent_tier_with_its_provider(self) -> None:
        """With no node model the agent's tier resolves through the agent's provider."""
        config = config_with(anthropic=ANTHROPIC, openai=OPENAI)
        agent = AgentConfig(model="cheap", provider="openai")
        resolved = resolve_model(None, None, agent, config)
        assert resolved == ResolvedModel("openai", "gpt-4o-mini", "cheap", "agent")

    def test_provider_default_tier(self) -> None:
        """With no model anywhere the default provider's worker tier is used."""
        config = Config(providers=Providers(default="anthropic", by_name={"anthropic": ANTHROPIC}))
        resolved = resolve_model("", "", None, config)
        assert resolved == ResolvedModel("anthropic", "claude-sonnet-4", "worker", "default")

    @pytest.mark.parametrize(
        ("model", "provider"),
        [
            ("claude-sonnet-4-5", "anthropic"),
            ("gpt-4o", "openai"),
            ("o3-mini", "openai"),
            ("codex-mini-latest", "openai"),
        ],
    )
    def test_provider_inferred_from_model_id(self, model: str, provider: str) -> None:
        """A model id's family names its provider over the configured default."""
        config = Config(providers=Providers(default="elsewhere"))
        assert resolve_model(model, None, None, config).provider == provider

    def test_node_model_family_beats_agent_provider(self) -> None:
        """A node's gpt-* model is not sent to the provider its agent names."""
        agent = AgentConfig(model="smart", provider="anthropic")
        resolved = resolve_model("gpt-4o", None, agent, config_with(anthropic=ANTHROPIC))
        assert resolved.provider == "openai"

    def test_unknown_family_uses_the_default_provider(self) -> None:
        """A model id of no known family goes to the default provider."""
        config = Config(providers=Providers(default="local"))
        assert resolve_model("llama3", None, None, config).provider == "local"

    def test_missing_tier_in_the_provider(self) -> None:
        """A tier the provider does not map is an error naming provider and tier."""
        config = Config(path=Path("orchestra.yaml"), providers=Providers(by_name={"a": ANTHROPIC}))
        with pytest.raises(ConfigError) as caught:
            resolve_model("cheap", None, None, config)
        assert str(caught.value) == (
            "orchestra.yaml: providers.a.models: provider 'a' has no 'cheap' tier "
            "(it has: smart, worker); add providers.a.models.cheap to orchestra.yaml"
        )

    def test_nothing_configured(self) -> None:
        """With no provider anywhere the error says how to configure one."""
        with pytest.raises(ConfigError) as caught:
            resolve_model(None, None, None, Config())
        assert str(caught.value) == (
            "providers.default: no provider for the 'worker' tier: set providers.default (with "
            "its models) in orchestra.yaml, provider on the agent, or llm_provider on the node"
        )

    def test_node_misspelt_tier(self) -> None:
        """A node's llm_model that looks like a misspelt tier is not sent as a model id."""
        with pytest.raises(ConfigError, match="llm_model: unknown tier 'wroker'"):
            resolve_model("wroker", None, None, config_with(anthropic=ANTHROPIC))


class TestImports:
    def test_config_does_not_import_provider_sdks(self) -> None:
        """Importing orchestra.config leaves the anthropic and openai SDKs unloaded."""
        code = (
            "import sys, orchestra.config; "
            "print('anthropic' in sys.modules or 'openai' in sys.modules)"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        assert result.stdout.strip() == "False"
