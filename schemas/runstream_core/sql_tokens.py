"""ClickHouse SQL cut into tokens, enough to rewrite a migration's DDL without changing its meaning.

Only what rewriting table names needs: words, quoted identifiers, string literals, numbers, comments,
blanks and single punctuation characters, each with its exact text, so that joining the texts gives
the statement back byte for byte. The engine itself remains the judge of what a statement means:
the tests parse every rewritten statement with it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from runstream_core.errors import UsageError

Kind = Literal["word", "identifier", "string", "number", "comment", "blank", "punct"]

_PATTERNS: tuple[tuple[Kind, re.Pattern[str]], ...] = (
    ("blank", re.compile(r"\s+")),
    ("comment", re.compile(r"--[^\n]*|#[ !][^\n]*|/\*.*?\*/", re.S)),
    ("string", re.compile(r"'(?:[^'\\]|\\.|'')*'", re.S)),
    ("identifier", re.compile(r"`(?:[^`\\]|\\.|``)*`|\"(?:[^\"\\]|\\.|\"\")*\"", re.S)),
    ("number", re.compile(r"\d[\w.]*")),
    ("word", re.compile(r"[A-Za-z_]\w*")),
)


@dataclass(frozen=True)
class Token:
    kind: Kind
    text: str

    @property
    def meaningful(self) -> bool:
        return self.kind not in ("blank", "comment")

    def is_word(self, *words: str) -> bool:
        """A bare word equal to one of ``words`` (keywords are compared without case)."""
        return self.kind == "word" and self.text.upper() in words

    @property
    def name(self) -> str | None:
        """The name a word or quoted identifier stands for; None for anything else."""
        if self.kind == "word":
            return self.text
        if self.kind == "identifier":
            quote, body = self.text[0], self.text[1:-1]
            return re.sub(r"\\(.)", r"\1", body.replace(quote * 2, quote))
        return None


def tokenize(sql: str) -> list[Token]:
    """``sql`` as tokens; :class:`UsageError` for an unterminated quote or comment."""
    tokens: list[Token] = []
    at = 0
    while at < len(sql):
        for kind, pattern in _PATTERNS:
            match = pattern.match(sql, at)
            if match:
                tokens.append(Token(kind, match.group()))
                at = match.end()
                break
        else:
            if sql[at] in "'`\"" or sql.startswith("/*", at):
                raise UsageError(f"unterminated quote or comment at character {at}: {sql[at : at + 40]!r}")
            tokens.append(Token("punct", sql[at]))
            at += 1
    return tokens


def join(tokens: Sequence[Token]) -> str:
    return "".join(token.text for token in tokens)


def meaningful(tokens: Sequence[Token], start: int = 0) -> Iterator[int]:
    """Indexes of the tokens from ``start`` on that are neither blanks nor comments."""
    return (i for i in range(start, len(tokens)) if tokens[i].meaningful)


def next_meaningful(tokens: Sequence[Token], start: int) -> int | None:
    """Index of the first token from ``start`` on that is neither blank nor comment."""
    return next(meaningful(tokens, start), None)


def closing(tokens: Sequence[Token], opening: int) -> int:
    """Index of the ``)`` that closes the ``(`` at ``opening``."""
    depth = 0
    for i in range(opening, len(tokens)):
        if tokens[i].text == "(" and tokens[i].kind == "punct":
            depth += 1
        elif tokens[i].text == ")" and tokens[i].kind == "punct":
            depth -= 1
            if depth == 0:
                return i
    raise UsageError("unbalanced parentheses")


def split_top_level(tokens: Sequence[Token], separator: str = ",") -> list[list[Token]]:
    """``tokens`` cut at each ``separator`` outside parentheses."""
    parts: list[list[Token]] = [[]]
    depth = 0
    for token in tokens:
        if token.kind == "punct" and token.text == "(":
            depth += 1
        elif token.kind == "punct" and token.text == ")":
            depth -= 1
        if depth == 0 and token.kind == "punct" and token.text == separator:
            parts.append([])
        else:
            parts[-1].append(token)
    return parts
