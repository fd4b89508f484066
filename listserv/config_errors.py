"""Configuration errors as operators read them: one line per fault, named by its key path
(``rooms[0].moderators.fr: 'bob' is not an email address``). Pure: pydantic's error dicts in, text out."""

from __future__ import annotations

from typing import Any


class ConfigError(Exception):
    """The configuration cannot be used; ``problems`` holds one line per fault."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def describe_problem(problem: Any) -> str:
    path = key_path(problem["loc"])
    if problem["type"] == "extra_forbidden":
        return f"{path}: unknown key (check its spelling)"
    if problem["type"] == "missing":
        return f"{path}: required key is missing"
    message = problem["msg"].removeprefix("Value error, ")
    if problem["type"] == "string_pattern_mismatch":
        message = f"{problem['input']!r} does not have the expected form"
    return f"{path}: {message}" if path else message


def key_path(location: tuple[Any, ...]) -> str:
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif str(part).startswith(("function-", "tagged-union")):
            continue
        else:
            path += f".{part}" if path else str(part)
    return path


def first_line(error: Exception) -> str:
    return " ".join(str(error).split())
