"""Agent prompts composed from role, persona, personality and task layer files."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from orchestra.config import AgentConfig, ConfigError
from orchestra.prompts import (
    TASK_HEADING,
    TEXT_KEYS,
    AgentPrompt,
    compose_agent_prompt,
    load_layer,
)

SECRET = "sk-do-not-print-me"


def layer(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def four_layers(tmp_path: Path) -> AgentConfig:
    return AgentConfig(
        role=layer(tmp_path, "role.yaml", "role:\n  name: reviewer\n  system: ROLE\n"),
        persona=layer(tmp_path, "persona.yaml", "persona:\n  description: PERSONA\n"),
        personality=layer(tmp_path, "personality.yaml", "personality:\n  system: STYLE\n"),
        task=layer(tmp_path, "task.yaml", "task:\n  instructions: TASK\n"),
    )


def compose(
    agent: AgentConfig,
    *,
    variables: dict[str, str] | None = None,
    context: dict[str, object] | None = None,
    node_prompt: str | None = None,
) -> AgentPrompt:
    return compose_agent_prompt(
        agent, variables=variables or {}, context=context or {}, node_prompt=node_prompt
    )


def config_error(agent: AgentConfig, context: dict[str, object] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        compose(agent, context=context)
    return caught.value


class TestComposition:
    def test_system_prompt_is_role_persona_personality_in_order(self, tmp_path: Path) -> None:
        """The system prompt is the role, persona and personality texts, in that order."""
        prompt = compose(four_layers(tmp_path))
        assert prompt.system == "ROLE\n\nPERSONA\n\nSTYLE"

    def test_task_is_the_user_message(self, tmp_path: Path) -> None:
        """Without a node prompt the task's text is the user message."""
        prompt = compose(four_layers(tmp_path))
        assert prompt.user == "TASK"
        assert prompt.layers == ("role", "persona", "personality", "task")

    def test_node_prompt_is_the_user_message(self, tmp_path: Path) -> None:
        """A node prompt is the user message, and the task ends the system prompt under a
        Task heading."""
        prompt = compose(four_layers(tmp_path), node_prompt="Review PR 12")
        assert prompt.user == "Review PR 12"
        assert prompt.system == f"ROLE\n\nPERSONA\n\nSTYLE\n\n{TASK_HEADING}\n\nTASK"

    def test_node_prompt_without_task_layer(self, tmp_path: Path) -> None:
        """With a node prompt and no task layer the system prompt has no Task heading."""
        agent = AgentConfig(role=layer(tmp_path, "role.yaml", "role:\n  system: ROLE\n"))
        prompt = compose(agent, node_prompt="Do it")
        assert prompt == AgentPrompt(system="ROLE", user="Do it", layers=("role",))

    def test_blank_node_prompt_counts_as_none(self, tmp_path: Path) -> None:
        """A node prompt of only whitespace leaves the task as the user message."""
        prompt = compose(four_layers(tmp_path), node_prompt="  \n")
        assert prompt.user == "TASK"
        assert TASK_HEADING not in prompt.system

    def test_node_prompt_is_not_rendered_again(self, tmp_path: Path) -> None:
        """The node prompt is used as given: its handler has rendered it already."""
        prompt = compose(four_layers(tmp_path), node_prompt="keep {{ this }}")
        assert prompt.user == "keep {{ this }}"

    def test_missing_optional_layers_are_skipped(self, tmp_path: Path) -> None:
        """An agent that names only some layers gets those, without empty gaps."""
        agent = AgentConfig(
            persona=layer(tmp_path, "persona.yaml", "persona:\n  system: PERSONA\n"),
            task=layer(tmp_path, "task.yaml", "task:\n  prompt: TASK\n"),
        )
        assert compose(agent) == AgentPrompt(
            system="PERSONA", user="TASK", layers=("persona", "task")
        )

    def test_agent_without_layers(self) -> None:
        """An agent with no layer files composes to empty messages."""
        assert compose(AgentConfig()) == AgentPrompt(system="", user="", layers=())

    def test_block_text_is_trimmed(self, tmp_path: Path) -> None:
        """A | block's trailing newline does not reach the prompt."""
        agent = AgentConfig(
            role=layer(tmp_path, "role.yaml", "role:\n  system: |\n    one\n    two\n\n")
        )
        assert compose(agent).system == "one\ntwo"


class TestRendering:
    def test_run_variables(self, tmp_path: Path) -> None:
        """{{ goal }} renders the run variable."""
        agent = AgentConfig(
            role=layer(tmp_path, "role.yaml", 'role:\n  system: "Goal: {{ goal }}"\n')
        )
        assert compose(agent, variables={"goal": "ship it"}).system == "Goal: ship it"

    def test_context_by_key(self, tmp_path: Path) -> None:
        """{{ context["key"] }} renders a context value, dotted keys included."""
        agent = AgentConfig(
            task=layer(tmp_path, "task.yaml", 'task:\n  prompt: |\n    {{ context["pr.url"] }}\n')
        )
        assert compose(agent, context={"pr.url": "https://x/1"}).user == "https://x/1"

    def test_plain_context_keys_are_names(self, tmp_path: Path) -> None:
        """A context key that is a plain name is reachable directly."""
        agent = AgentConfig(task=layer(tmp_path, "task.yaml", "task:\n  prompt: '{{ branch }}'\n"))
        assert compose(agent, context={"branch": "main"}).user == "main"

    def test_variable_wins_over_context_key(self, tmp_path: Path) -> None:
        """A run variable wins over a context key of the same name."""
        agent = AgentConfig(task=layer(tmp_path, "task.yaml", "task:\n  prompt: '{{ goal }}'\n"))
        prompt = compose(agent, variables={"goal": "variable"}, context={"goal": "context"})
        assert prompt.user == "variable"

    def test_values_are_not_shell_quoted(self, tmp_path: Path) -> None:
        """Prompts are text: values with quotes and spaces arrive as they are."""
        agent = AgentConfig(task=layer(tmp_path, "task.yaml", "task:\n  prompt: '{{ title }}'\n"))
        title = 'it\'s a "fix" for $HOME'
        assert compose(agent, context={"title": title}).user == title

    def test_every_layer_is_rendered(self, tmp_path: Path) -> None:
        """Persona and personality texts are templates too."""
        agent = AgentConfig(
            persona=layer(tmp_path, "p.yaml", "persona:\n  description: '{{ lang }} expert'\n"),
            personality=layer(tmp_path, "q.yaml", "personality:\n  system: '{{ tone }}'\n"),
        )
        prompt = compose(agent, variables={"lang": "Rust", "tone": "terse"})
        assert prompt.system == "Rust expert\n\nterse"

    def test_defined_test_guards_optional_values(self, tmp_path: Path) -> None:
        """`is defined` lets a layer use a value only when it is there."""
        text = "task:\n  prompt: '{% if notes is defined %}{{ notes }}{% else %}none{% endif %}'\n"
        agent = AgentConfig(task=layer(tmp_path, "task.yaml", text))
        assert compose(agent).user == "none"


class TestLayerFiles:
    @pytest.mark.parametrize("key", TEXT_KEYS)
    def test_text_under_any_text_key(self, tmp_path: Path, key: str) -> None:
        """The text may be given under system, description, instructions or prompt."""
        path = layer(tmp_path, "persona.yaml", f"persona:\n  name: sec\n  {key}: TEXT\n")
        loaded = load_layer("persona", path)
        assert (loaded.name, loaded.text, loaded.text_key) == ("sec", "TEXT", key)

    def test_missing_file_names_it(self, tmp_path: Path) -> None:
        """A layer file that is not there is a ConfigError naming the file."""
        missing = tmp_path / "gone.yaml"
        err = config_error(AgentConfig(role=missing))
        assert err.path == str(missing)
        assert "not found" in str(err)

    def test_unknown_key_names_key_and_line(self, tmp_path: Path) -> None:
        """A key other than name and the text keys is reported with its line."""
        path = layer(tmp_path, "role.yaml", f"role:\n  name: r\n  sytem: {SECRET}\n")
        err = config_error(AgentConfig(role=path))
        assert (err.path, err.key, err.line) == (str(path), "role.sytem", 3)
        assert "did you mean 'system'" in str(err)
        assert SECRET not in str(err)

    def test_wrong_top_level_key(self, tmp_path: Path) -> None:
        """A persona file given as the role is named as the wrong layer."""
        path = layer(tmp_path, "role.yaml", "persona:\n  system: x\n")
        err = config_error(AgentConfig(role=path))
        assert (err.key, err.line) == ("persona", 1)
        assert "role layer" in str(err)

    def test_no_text(self, tmp_path: Path) -> None:
        """A layer with a name but no text is an error naming the text keys."""
        path = layer(tmp_path, "task.yaml", "task:\n  name: t\n")
        err = config_error(AgentConfig(task=path))
        assert (err.key, err.line) == ("task", 1)
        assert "system, description, instructions, prompt" in str(err)

    def test_text_under_two_keys(self, tmp_path: Path) -> None:
        """Text under two keys is ambiguous, and the second one is named."""
        path = layer(tmp_path, "task.yaml", "task:\n  instructions: a\n  prompt: b\n")
        err = config_error(AgentConfig(task=path))
        assert (err.key, err.line) == ("task.prompt", 3)

    def test_unquoted_template_is_a_yaml_error(self, tmp_path: Path) -> None:
        """Text starting with an unquoted {{ does not parse as YAML; the error says to
        quote it."""
        path = layer(tmp_path, "task.yaml", "task:\n  prompt: {{ goal }}\n")
        err = config_error(AgentConfig(task=path))
        assert err.line == 2
        assert "quote text that starts with {{" in str(err)

    def test_text_that_is_a_map(self, tmp_path: Path) -> None:
        """A map where the text should be is reported by its key."""
        path = layer(tmp_path, "task.yaml", "task:\n  prompt: {goal: x}\n")
        err = config_error(AgentConfig(task=path))
        assert (err.key, err.line) == ("task.prompt", 2)
        assert "expected text, got a map" in str(err)

    def test_empty_text(self, tmp_path: Path) -> None:
        """Blank text is an error, not an empty layer."""
        err = config_error(AgentConfig(role=layer(tmp_path, "r.yaml", "role:\n  system: ''\n")))
        assert err.key == "role.system"

    def test_name_must_be_text(self, tmp_path: Path) -> None:
        """A name that is not a string is reported by its key."""
        path = layer(tmp_path, "r.yaml", "role:\n  name: [a]\n  system: x\n")
        assert config_error(AgentConfig(role=path)).key == "role.name"

    def test_empty_file(self, tmp_path: Path) -> None:
        """An empty layer file says what it should hold."""
        err = config_error(AgentConfig(role=layer(tmp_path, "r.yaml", "")))
        assert "expected a map with one key, role" in str(err)

    def test_yaml_syntax_error_has_line_not_text(self, tmp_path: Path) -> None:
        """A YAML syntax error gives the line, never the file's text."""
        path = layer(tmp_path, "r.yaml", f'role:\n  system: "{SECRET}\n  name: [\n')
        err = config_error(AgentConfig(role=path))
        assert err.path == str(path)
        assert err.line is not None
        assert SECRET not in str(err)


class TestTemplateErrors:
    def test_undefined_variable_names_file_line_and_variable(self, tmp_path: Path) -> None:
        """An undefined variable is a ConfigError naming the file, its line and the
        variable, not an empty string."""
        text = f"role:\n  system: |\n    {SECRET}\n    Goal: {{{{ goal }}}}\n"
        path = layer(tmp_path, "role.yaml", text)
        err = config_error(AgentConfig(role=path))
        assert (err.path, err.key, err.line) == (str(path), "role.system", 4)
        assert "undefined variable 'goal'" in str(err)
        assert SECRET not in str(err)

    def test_undefined_context_key(self, tmp_path: Path) -> None:
        """A context key that is not set is named as a context key."""
        path = layer(tmp_path, "task.yaml", "task:\n  prompt: '{{ context[\"pr.url\"] }}'\n")
        err = config_error(AgentConfig(task=path), context={"other": 1})
        assert "no context key 'pr.url'" in str(err)
        assert err.line == 2

    def test_undefined_in_persona_names_persona_file(self, tmp_path: Path) -> None:
        """The error names the layer file the variable is missing from."""
        agent = four_layers(tmp_path)
        path = layer(tmp_path, "persona.yaml", "persona:\n  description: '{{ lang }}'\n")
        err = config_error(agent)
        assert (err.path, err.key) == (str(path), "persona.description")

    def test_syntax_error_names_file_and_line(self, tmp_path: Path) -> None:
        """A Jinja2 syntax error names the file and the file line it is on."""
        text = "# reviewer\nrole:\n  system: |\n    fine\n    broken {{ x }\n"
        path = layer(tmp_path, "role.yaml", text)
        with pytest.raises(ConfigError) as caught:
            load_layer("role", path)
        err = caught.value
        assert (err.path, err.key, err.line) == (str(path), "role.system", 5)
        assert "template syntax error" in str(err)

    def test_folded_text_reports_the_key_and_text_line(self, tmp_path: Path) -> None:
        """When the text's lines are not the file's, the key's line and the line within
        the text are given."""
        text = "role:\n  system: >\n    one\n\n    {{ nope }}\n"
        err = config_error(AgentConfig(role=layer(tmp_path, "role.yaml", text)))
        assert err.line == 2
        assert "line 2 of the text" in str(err)

    def test_failing_expression(self, tmp_path: Path) -> None:
        """An expression that fails while rendering is a ConfigError with its line."""
        path = layer(tmp_path, "task.yaml", "task:\n  prompt: |\n    ok\n    {{ 1 / n }}\n")
        err = config_error(AgentConfig(task=path), context={"n": 0})
        assert (err.key, err.line) == ("task.prompt", 4)
        assert "ZeroDivisionError" in str(err)


class TestCaching:
    def test_unchanged_file_is_parsed_once(self, tmp_path: Path) -> None:
        """Loading an unchanged layer file again gives the same parsed layer."""
        path = layer(tmp_path, "role.yaml", "role:\n  system: ROLE\n")
        assert load_layer("role", path) is load_layer("role", path)

    def test_changed_file_is_read_again(self, tmp_path: Path) -> None:
        """A layer file edited since it was read is read again."""
        path = layer(tmp_path, "role.yaml", "role:\n  system: BEFORE\n")
        agent = AgentConfig(role=path)
        assert compose(agent).system == "BEFORE"
        path.write_text("role:\n  system: AFTER!\n", encoding="utf-8")
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        assert compose(agent).system == "AFTER!"

    def test_file_broken_since_is_reported(self, tmp_path: Path) -> None:
        """A file that was valid and is now broken raises rather than serving the old text."""
        path = layer(tmp_path, "role.yaml", "role:\n  system: ok\n")
        load_layer("role", path)
        path.write_text("role:\n  sysstem: ok\n", encoding="utf-8")
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        with pytest.raises(ConfigError):
            load_layer("role", path)


class TestImports:
    def test_no_provider_sdk_on_import(self) -> None:
        """Importing the prompt composer imports no provider SDK."""
        code = (
            "import sys, orchestra.prompts; "
            "print('anthropic' in sys.modules or 'openai' in sys.modules)"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        assert result.stdout.strip() == "False"
