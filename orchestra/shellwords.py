"""Where the placeholders of a ``tool_command`` sit, as the shell will read it.

Every value substituted into a ``tool_command`` is quoted as one shell word
(``shlex.quote``). That is safe only where the shell reads a word: inside quotes the quoting
is itself quoted text and a crafted value closes it (``echo "x={{ x }}"`` with
``x='$(touch pwned)'``); in a heredoc or backticks the rules differ again; and after
``eval`` or a ``-c`` option the value is run as code, whatever its quotes. So a placeholder
may only stand where a bare word could, and :func:`placeholder_problems` names each one
that does not, with the fix. ``{{ x|safe }}`` (raw text, on the author's responsibility) is
not checked.

The scan is a small shell lexer over the template's text (Jinja tags are opaque): single
and double quotes, backslashes, backticks, ``$(...)`` (whose inside is read afresh, so
``"$(echo {{ x }})"`` is fine), ``#`` comments, heredocs, and the words of each simple
command.
"""

from __future__ import annotations

import re

import attrs

__all__ = ["PlaceholderProblem", "placeholder_problems"]

_SAFE = re.compile(r"\|\s*safe\s*$")
_HEREDOC = re.compile(r"<<(-?)\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\2")
_ENDS_COMMAND = frozenset(";&|\n")
_FIX = (
    "write the placeholder as a word of its own, outside any quotes (Orchestra quotes every "
    "value as one shell word: echo x={{ x }} prints x=VALUE); to run a value as code on "
    "purpose, mark it {{ x|safe }}"
)


@attrs.frozen
class PlaceholderProblem:
    """A placeholder the shell would not read as one quoted word."""

    placeholder: str
    where: str
    #: the fix to make
    fix: str = _FIX

    @property
    def message(self) -> str:
        return f"{self.placeholder} sits {self.where}"


#: interpreters whose ``-c`` (or ``-e``) option takes code to run
_INTERPRETERS = frozenset(
    ("sh", "bash", "dash", "zsh", "ksh", "ash", "python", "python3", "perl", "ruby", "node")
)


def _runs_code(words: list[str]) -> bool:
    """The words so far end in an interpreter and its option taking code (``bash -lc``)."""
    if len(words) < 2:
        return False
    program, option = words[-2].rsplit("/", 1)[-1], words[-1]
    is_code_option = (
        option.startswith("-")
        and not option.startswith("--")
        and (option.endswith("c") or option == "-e")
    )
    return program in _INTERPRETERS and is_code_option


def placeholder_problems(template: str) -> list[PlaceholderProblem]:
    """The placeholders of ``template`` that are not in a bare word position."""
    return _Scanner(template).scan()


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0
        #: the quoting contexts open, innermost last: plain, single, double, backtick,
        #: subshell (``$(``), group (``(``)
        self.stack = ["plain"]
        #: the words of the simple command being read (in a plain context)
        self.words: list[str] = []
        self.word = ""
        self.heredocs: list[tuple[str, bool]] = []  # delimiters waiting for the next line
        self.problems: list[PlaceholderProblem] = []

    def scan(self) -> list[PlaceholderProblem]:
        text = self.text
        while self.i < len(text):
            if text.startswith("{{", self.i):
                self._placeholder()
                continue
            if text.startswith("{%", self.i) or text.startswith("{#", self.i):
                close = "%}" if text[self.i + 1] == "%" else "#}"
                end = text.find(close, self.i + 2)
                self.i = len(text) if end < 0 else end + 2
                continue
            self._char(text[self.i])
        return self.problems

    def _placeholder(self) -> None:
        end = self.text.find("}}", self.i + 2)
        end = len(self.text) if end < 0 else end
        shown = self.text[self.i : end + 2]
        expression = self.text[self.i + 2 : end].strip()
        self.i = end + 2
        if _SAFE.search(expression):
            self.word += "x"
            return
        context = self.stack[-1]
        where = {
            "single": "inside single quotes, where the shell substitutes nothing",
            "double": "inside double quotes, where its quoting becomes text a value can close",
            "backtick": "inside backticks",
        }.get(context)
        if where is None and self.words and self.words[0] == "eval":
            where = "in an eval, which runs its value as code"
        elif where is None and not self.word and _runs_code(self.words):
            where = f"after {self.words[-2]} {self.words[-1]}, which runs the value as code"
        if where is not None:
            self.problems.append(PlaceholderProblem(shown, where))
        self.word += "x"

    def _char(self, char: str) -> None:
        text, context = self.text, self.stack[-1]
        if context == "single":
            if char == "'":
                self.stack.pop()
            self.i += 1
            return
        if char == "\\":
            self.word += text[self.i : self.i + 2]
            self.i += 2
            return
        if context == "double":
            self._in_double(char)
            return
        if context == "backtick":
            if char == "`":
                self.stack.pop()
            self.i += 1
            return
        self._in_plain(char)

    def _in_double(self, char: str) -> None:
        if char == '"':
            self.stack.pop()
        elif char == "`":
            self.stack.append("backtick")
        elif self.text.startswith("$(", self.i):
            self._open_subshell()
            return
        self.i += 1

    def _open_subshell(self) -> None:
        self.stack.append("subshell")
        self._end_word()
        self.words = []
        self.i += 2

    def _in_plain(self, char: str) -> None:
        text = self.text
        if char == "'":
            self.stack.append("single")
            self.word += char
        elif char == '"':
            self.stack.append("double")
            self.word += char
        elif char == "`":
            self.stack.append("backtick")
        elif text.startswith("$(", self.i):
            self._open_subshell()
            return
        elif char == "(":
            self.stack.append("group")
            self.words = []
        elif char == ")" and len(self.stack) > 1:
            self._end_word()
            self.stack.pop()
        elif char == "#" and not self.word:
            end = text.find("\n", self.i)
            self.i = len(text) if end < 0 else end
            return
        elif text.startswith("<<", self.i) and not text.startswith("<<<", self.i):
            found = _HEREDOC.match(text, self.i)
            if found is not None:
                self.heredocs.append((found.group(3), found.group(1) == "-"))
                self.i = found.end()
                return
        elif char.isspace() or char in _ENDS_COMMAND:
            self._end_word()
            if char in _ENDS_COMMAND:
                self.words = []
            if char == "\n" and self.heredocs:
                self.i += 1
                self._heredoc_bodies()
                return
        else:
            self.word += char
        self.i += 1

    def _end_word(self) -> None:
        if self.word:
            self.words.append(self.word)
            self.word = ""

    def _heredoc_bodies(self) -> None:
        """Skip the bodies of the heredocs opened on the line just ended, noting the
        placeholders in them."""
        text = self.text
        for delimiter, strip_tabs in self.heredocs:
            while self.i < len(text):
                end = text.find("\n", self.i)
                end = len(text) if end < 0 else end
                line = text[self.i : end]
                self.i = end + 1
                if (line.lstrip("\t") if strip_tabs else line) == delimiter:
                    break
                for match in re.finditer(r"\{\{(.*?)\}\}", line):
                    if not _SAFE.search(match.group(1).strip()):
                        self.problems.append(PlaceholderProblem(match.group(0), "inside a heredoc"))
        self.heredocs = []
