"""No value substituted into a tool_command runs as shell code, wherever its placeholder
sits: a bare placeholder is quoted as one word, and every other position (quotes,
backticks, heredocs, eval, sh -c) is refused before anything runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from orchestra.shellwords import placeholder_problems
from orchestra.templates import TemplateError, render_shell

ORCHESTRA = Path(sys.executable).with_name("orchestra")

#: each tries to create the file "pwned" in the working directory
PAYLOADS = [
    "$(touch pwned)",
    "`touch pwned`",
    "; touch pwned",
    "&& touch pwned",
    "| touch pwned",
    "\ntouch pwned",
    "' ; touch pwned ; '",
    '" ; touch pwned ; "',
    "'\"$(touch pwned)\"'",
    '"$(touch pwned)"',
    "\\'; touch pwned; #",
    '\\"; touch pwned; #',
    "$(IFS=_;cmd=touch_pwned;$cmd)",
    "${IFS}; touch pwned",
    "x'$(touch pwned)'",
    "$((1)) $(touch pwned)",
    "'; touch pwned #",
    '"; touch pwned #',
    "\nEOF\ntouch pwned\ncat <<EOF",
    "EOF\ntouch pwned",
    ") ; touch pwned ; (",
    "} ; touch pwned ; {",
    "$(printf touch) pwned",
    "a\r\ntouch pwned",
    "*; touch pwned",
    "-c 'touch pwned'",
    "touch pwned",
    "$'\\x74ouch' pwned",
    "<(touch pwned)",
    ">(touch pwned)",
]

#: where a placeholder may stand (rendered and run) and where it must be refused
ALLOWED = {
    "bare": "echo {{ v }}",
    "assignment": 'x={{ v }}; printf "%s" "$x"',
    "pipe": "echo {{ v }} | cat",
    "command substitution in quotes": 'echo "$(echo {{ v }})"',
    "sh -c with the value as an argument": "sh -c 'echo \"$1\"' _ {{ v }}",
}
REFUSED = {
    "double quotes": 'echo "x={{ v }}"',
    "single quotes": "echo 'x={{ v }}'",
    "sh -c, single quotes": "sh -c 'echo {{ v }}'",
    "sh -c, double quotes": 'sh -c "echo {{ v }}"',
    "sh -c, the code itself": "sh -c {{ v }}",
    "bash -lc": "bash -lc {{ v }}",
    "heredoc": "cat <<EOF\n{{ v }}\nEOF",
    "eval": "eval echo {{ v }}",
    "backticks": "echo `echo {{ v }}`",
}


@pytest.mark.parametrize("placement", sorted(ALLOWED))
def test_a_bare_placeholder_is_one_word_and_never_code(placement: str, tmp_path: Path) -> None:
    template = ALLOWED[placement]
    assert placeholder_problems(template) == []
    for payload in PAYLOADS:
        command = render_shell(template, {"v": payload}, {}, "test")
        ran = subprocess.run(
            ["/bin/sh", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=10
        )
        assert not (tmp_path / "pwned").exists(), (placement, payload, command)
        if placement != "assignment":
            assert payload.replace("\r", "") in ran.stdout.replace("\r", ""), (payload, command)


@pytest.mark.parametrize("placement", sorted(REFUSED))
def test_every_other_position_is_refused_before_anything_runs(placement: str) -> None:
    template = REFUSED[placement]
    (problem,) = placeholder_problems(template)
    assert problem.placeholder == "{{ v }}"
    with pytest.raises(TemplateError, match="write the placeholder as a word of its own"):
        render_shell(template, {"v": PAYLOADS[0]}, {}, "node 't' tool_command")


def test_safe_opts_out_on_purpose() -> None:
    assert placeholder_problems('echo "{{ v|safe }}"') == []
    assert render_shell('echo "{{ v|safe }}"', {"v": "a b"}, {}, "t") == 'echo "a b"'


def test_compile_refuses_the_issue_example_and_run_never_starts(tmp_path: Path) -> None:
    """The example from the report: compile is an error naming the node and the fix, and
    run exits 2 without running anything."""
    (tmp_path / "p.dot").write_text(
        "digraph g { start [shape=Mdiamond]; exit [shape=Msquare]\n"
        '  say [shape=parallelogram, tool_command="echo \\"x={{ x }}\\""]\n'
        "  start -> say -> exit }\n"
    )
    compiled = subprocess.run(
        [str(ORCHESTRA), "compile", "p.dot"], cwd=tmp_path, capture_output=True, text=True
    )
    assert compiled.returncode == 2
    shown = compiled.stdout + compiled.stderr
    assert "tool_command_quoting" in shown
    assert "node 'say' tool_command: {{ x }} sits inside double quotes" in shown
    ran = subprocess.run(
        [str(ORCHESTRA), "run", "p.dot", "x=$(touch pwned)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert ran.returncode == 2
    assert not (tmp_path / "pwned").exists()
