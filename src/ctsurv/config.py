"""Configuration: validation against the JSON schema with messages a person can act on.

``validate_config`` fills in the schema's defaults, then reports *every* problem at once,
each as ``key 'imaging.size': expected ..., got ...``, in a :class:`ConfigError`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .errors import ConfigError


def load_yaml(path: str | Path) -> Any:
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}{at}: not valid YAML ({getattr(err, 'problem', err)})") from None


def _key(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _describe(error: jsonschema.ValidationError) -> str:
    key = _key(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    hint = f" ({schema['description']})" if "description" in schema else ""
    v = error.validator
    if v == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return f"key '{_key(list(error.absolute_path) + [missing])}' is missing"
    if v == "additionalProperties":
        return f"key '{key}': {error.message} (check the spelling against workflow/schemas/config.schema.yaml)"
    if v == "enum":
        return f"key '{key}': expected one of {error.validator_value}, got {error.instance!r}{hint}"
    if v == "type":
        return f"key '{key}': expected {error.validator_value}, got {error.instance!r}{hint}"
    return f"key '{key}': {error.message}{hint}"


def _fill_defaults(instance: Any, schema: dict) -> None:
    if not isinstance(instance, dict) or not isinstance(schema, dict):
        return
    for name, sub in schema.get("properties", {}).items():
        if name not in instance and isinstance(sub, dict) and "default" in sub:
            instance[name] = copy.deepcopy(sub["default"])
        if name in instance:
            _fill_defaults(instance[name], sub)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for name, value in instance.items():
            if name not in schema.get("properties", {}):
                _fill_defaults(value, extra)


def validate_config(config: dict, schema: str | Path | dict) -> dict:
    """Return a copy of ``config`` with defaults filled in; raise ConfigError listing every problem."""
    if not isinstance(schema, dict):
        schema = load_yaml(str(schema))
    if not isinstance(config, dict):
        raise ConfigError("the configuration must be a mapping of keys to values")
    config = copy.deepcopy(dict(config))
    _fill_defaults(config, schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        lines = "\n  - ".join(_describe(e) for e in errors)
        raise ConfigError(f"the configuration has {len(errors)} problem(s):\n  - {lines}")
    _check_consistency(config)
    # `enabled: false` drops a dataset, so a config file layered on top of another (Snakemake
    # merges --configfile into config/config.yaml) can switch the demo datasets off.
    config["datasets"] = {name: spec for name, spec in config["datasets"].items() if spec.get("enabled", True)}
    if not config["datasets"]:
        raise ConfigError("every dataset under 'datasets' has enabled: false; enable at least one")
    return config


def _check_consistency(config: dict) -> None:
    splits = config.get("splits", {})
    total = sum(float(splits.get(k, 0)) for k in ("train", "val", "test"))
    if abs(total - 1.0) > 1e-6:
        raise ConfigError(f"keys 'splits.train', 'splits.val', 'splits.test' must add up to 1, they add up to {total:g}")
