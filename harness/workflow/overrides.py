"""Typed values for ``snakemake --config`` overrides.

Snakemake parses a top-level ``KEY=VALUE`` as int, float, ``True``/``False`` or YAML, but reads
nested YAML with its string-only loader: ``--config 'datasets={cityscapes: {schedule: {crop:
[128, 256]}}}'`` arrives as ``crop: ["128", "256"]`` and ``checkpoint: null`` as the string
``"null"``. :func:`coerce_config` re-reads every string scalar as YAML 1.2 would (numbers,
``true``/``false``, ``null``) wherever the config schema does not require a string there, so an
override means what it would mean written in ``config.yaml``. Run before schema validation.
"""
from __future__ import annotations

from typing import Any

from harness.config import parse_yaml_scalar

Schema = dict[str, Any]


def _resolve(node: Schema, root: Schema) -> list[Schema]:
    """A schema node with ``$ref`` followed and ``anyOf``/``oneOf`` flattened into branches."""
    if "$ref" in node:
        ref = node["$ref"].removeprefix("#/").split("/")
        target: Any = root
        for part in ref:
            target = target[part]
        return _resolve(target, root)
    branches = node.get("anyOf") or node.get("oneOf")
    if branches:
        return [leaf for branch in branches for leaf in _resolve(branch, root)]
    return [node]


def _child(nodes: list[Schema], key: str | int, root: Schema) -> list[Schema]:
    """The schema branches of ``key`` (a mapping key or a list index) under ``nodes``."""
    out: list[Schema] = []
    for node in nodes:
        if isinstance(key, int):
            items = node.get("items")
            if isinstance(items, dict):
                out += _resolve(items, root)
            continue
        if key in node.get("properties", {}):
            out += _resolve(node["properties"][key], root)
        elif isinstance(node.get("additionalProperties"), dict):
            out += _resolve(node["additionalProperties"], root)
    return out


def _string_only(nodes: list[Schema]) -> bool:
    """Every branch wants a string (type string, or an enum/const of strings)."""
    def wants_string(node: Schema) -> bool:
        if "const" in node:
            return isinstance(node["const"], str)
        if "enum" in node:
            return all(isinstance(v, str) for v in node["enum"])
        return node.get("type") == "string"

    return bool(nodes) and all(wants_string(n) for n in nodes)


def _coerce(value: Any, nodes: list[Schema], root: Schema) -> Any:
    if isinstance(value, dict):
        return {k: _coerce(v, _child(nodes, k, root), root) for k, v in value.items()}
    if isinstance(value, list):
        return [_coerce(v, _child(nodes, i, root), root) for i, v in enumerate(value)]
    if isinstance(value, str) and not _string_only(nodes):
        parsed = parse_yaml_scalar(value)
        return parsed if parsed is None or isinstance(parsed, (bool, int, float)) else value
    return value


def coerce_config(config: dict[str, Any], schema: Schema) -> dict[str, Any]:
    """Re-type the string scalars of ``config`` (in place) where ``schema`` allows non-strings."""
    typed = _coerce(config, _resolve(schema, schema), schema)
    config.clear()
    config.update(typed)
    return config
