"""Read policy YAML with line numbers, expand `${NAME}` / `${NAME:-default}`, validate.

A broken file stops start-up with one message naming the file, the line and field, and
what is wrong, e.g.:
    policies/models.yaml:42 models[3].tier: Input should be less than or equal to 4
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from proxy.errors import PolicyError

M = TypeVar("M", bound=BaseModel)
PathKey = tuple[str | int, ...]

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def read_yaml(path: Path, environ: Mapping[str, str]) -> tuple[Any, dict[PathKey, int]]:
    """Parse one YAML file into Python data and a map from data path to 1-based line."""
    try:
        text = path.read_text(encoding="utf-8")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.load(text, Loader=yaml.SafeLoader)
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read: {exc.strerror}") from exc
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else "?"
        raise PolicyError(f"{path}:{line}: invalid YAML: {exc.problem}") from exc
    lines: dict[PathKey, int] = {}
    if node is not None:
        _record_lines(node, (), lines)
    return _expand(data, (), path, lines, environ), lines


def validate(model: type[M], data: Any, path: Path, lines: dict[PathKey, int]) -> M:
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as exc:
        raise PolicyError(format_validation_error(exc, path, lines)) from None


def format_validation_error(exc: ValidationError, path: Path, lines: dict[PathKey, int]) -> str:
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        problems.append(f"{path}:{_line_for(loc, lines)} {_dotted(loc) or '(top level)'}: {err['msg']}")
    return "invalid policy:\n  " + "\n  ".join(problems)


def _line_for(loc: PathKey, lines: dict[PathKey, int]) -> int | str:
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return lines.get((), "?")


def _dotted(loc: PathKey) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _record_lines(node: yaml.Node, key: PathKey, lines: dict[PathKey, int]) -> None:
    lines[key] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for k_node, v_node in node.value:
            child = key + (k_node.value,)
            _record_lines(v_node, child, lines)
            lines[child] = k_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _record_lines(item, key + (i,), lines)


def _expand(value: Any, key: PathKey, path: Path, lines: dict[PathKey, int], environ: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return expand_env(value, environ, where=f"{path}:{_line_for(key, lines)} {_dotted(key)}")
    if isinstance(value, dict):
        return {k: _expand(v, key + (k,), path, lines, environ) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, key + (i,), path, lines, environ) for i, v in enumerate(value)]
    return value


def expand_env(text: str, environ: Mapping[str, str], where: str = "") -> str:
    """`${NAME}` must be set (empty counts as set); `${NAME:-default}` falls back when unset or empty."""

    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = environ.get(name)
        if value:
            return value
        if default is not None:
            return default
        if value is not None:
            return value
        raise PolicyError(f"{where}: environment variable {name} is not set (write ${{{name}:-default}} for a default)")

    return _ENV_REF.sub(sub, text)
