"""Configuration: validation against the JSON schema with messages a person can act on.

``validate_config`` fills in the schema's defaults, then reports *every* problem at once,
each as ``key 'imaging.size': expected ..., got ...``, in a :class:`ConfigError`.  The schema
closes every section (``additionalProperties: false``), so a misspelled key is an error that
names the closest known key, never a silent fall-back to a default.  :func:`load_yaml`
refuses a key given twice in one mapping (plain YAML keeps the last one silently).
"""

from __future__ import annotations

import copy
import difflib
import string
from pathlib import Path
from typing import Any, Iterable

import jsonschema
import yaml

from .errors import ConfigError


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key, first, again):
        super().__init__(f"key '{key}' is given twice in one mapping")
        self.key, self.first, self.again = key, first, again


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key repeated within one mapping."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            self.flatten_mapping(node)
            seen: dict = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    if key in seen:
                        raise _DuplicateKey(key, seen[key], key_node.start_mark)
                    seen[key] = key_node.start_mark
                except TypeError:  # an unhashable key: let SafeLoader report it
                    pass
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | Path) -> Any:
    """Parse a YAML file; a missing file, a syntax error or a duplicate key is a ConfigError."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.load(fh, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except (FileNotFoundError, IsADirectoryError):
        raise ConfigError(f"{path}: {'is a folder, not a YAML file' if path.is_dir() else 'file not found'}") from None
    except _DuplicateKey as dup:
        raise ConfigError(
            f"{path}, line {dup.again.line + 1}: key '{dup.key}' is given twice in the same mapping (first on line "
            f"{dup.first.line + 1}); YAML would keep only the last one silently. Remove or merge one of them"
        ) from None
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
        return _describe_unknown_keys(error)
    if v == "enum":
        return f"key '{key}': expected one of {error.validator_value}, got {error.instance!r}{hint}"
    if v == "type":
        return f"key '{key}': expected {error.validator_value}, got {error.instance!r}{hint}"
    return f"key '{key}': {error.message}{hint}"


def _describe_unknown_keys(error: jsonschema.ValidationError) -> str:
    known = list((error.schema or {}).get("properties", {})) if isinstance(error.schema, dict) else []
    unknown = [k for k in (error.instance or {}) if k not in known] if isinstance(error.instance, dict) else []
    parts = []
    for name in unknown:
        path = _key(list(error.absolute_path) + [name])
        close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.6)
        hint = f"did you mean '{_key(list(error.absolute_path) + [close[0]])}'?" if close else f"known keys here: {', '.join(known)}"
        parts.append(f"key '{path}' is not a known key ('{name}' was unexpected; {hint})")
    if not parts:
        return f"key '{_key(error.absolute_path)}': {error.message}"
    return "; ".join(parts) + " (check the spelling against workflow/schemas/config.schema.yaml)"


def check_yaml_files(paths: Iterable[str | Path]) -> None:
    """Parse each file with :func:`load_yaml` for its checks (duplicate keys): the workflow's
    config files are loaded by Snakemake, whose YAML reader keeps a repeated key silently."""
    for path in paths:
        load_yaml(path)


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
    problems = []
    for name, spec in config.get("datasets", {}).items():
        problems += _sentence_problems(name, spec)
        for column, decl in (spec.get("clinical") or {}).items():
            low, high = decl.get("min"), decl.get("max")
            if low is not None and high is not None and low > high:
                problems.append(f"key 'datasets.{name}.clinical.{column}': min {low:g} is larger than max {high:g}")
            if (low is not None or high is not None) and decl.get("type") not in ("int", "float"):
                problems.append(f"key 'datasets.{name}.clinical.{column}': min/max apply to int and float columns, "
                                f"not to {decl.get('type')}")
            if decl.get("type") == "category" and not decl.get("categories"):
                problems.append(f"key 'datasets.{name}.clinical.{column}.categories' is missing or empty: a category "
                                "column needs its allowed values, e.g. categories: [never, former, current]")
            elif decl.get("categories") and decl.get("type") != "category":
                problems.append(f"key 'datasets.{name}.clinical.{column}.categories': categories apply to category "
                                f"columns, not to {decl.get('type')}")
        problems += _user_key_problems(name, spec)
    problems += _training_problems(config.get("vlm") or {})
    if problems:
        lines = "\n  - ".join(problems)
        raise ConfigError(f"the configuration has {len(problems)} problem(s):\n  - {lines}")


def _sentence_problems(name: str, spec: dict) -> list[str]:
    """Every {placeholder} of the clinical sentence must be a declared clinical column."""
    template = spec.get("clinical_sentence") or ""
    declared = list(spec.get("clinical") or {})
    key = f"datasets.{name}.clinical_sentence"
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]
    except ValueError as err:
        return [f"key '{key}': not a valid template ({err}); write placeholders as {{column}} and a literal brace as {{{{ or }}}}"]
    problems = []
    for field in dict.fromkeys(fields):
        if field not in declared:
            close = difflib.get_close_matches(field, declared, n=1, cutoff=0.6)
            hint = f"did you mean '{{{close[0]}}}'?" if close else f"declared: {', '.join(declared) or 'none'}"
            problems.append(f"key '{key}': placeholder '{{{field}}}' is not a declared clinical column ({hint}); "
                            f"declare it under 'datasets.{name}.clinical' or fix the template")
    return problems


_BOOL_WORDS = {"true": True, "false": False}


def _column_hint(name: str, key: str, column: str, declared: list[str]) -> str:
    close = difflib.get_close_matches(str(column), declared, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'?" if close else f"declared: {', '.join(declared) or 'none'}"
    return (f"key 'datasets.{name}.{key}.{column}': '{column}' is not a declared clinical column ({hint}); "
            f"declare it under 'datasets.{name}.clinical' or fix the name")


def _label_value_problem(name: str, column: str, value, decl: dict) -> str | None:
    """Whether ``value`` (a key under ``labels.<column>``) can be a value of the declared column."""
    kind = decl.get("type")
    text = str(value).lower() if isinstance(value, bool) else str(value)
    key = f"key 'datasets.{name}.labels.{column}.{text}'"
    if kind == "bool" and text not in _BOOL_WORDS:
        return f"{key}: '{text}' is not a value of the bool column '{column}'; use true or false"
    if kind == "category":
        allowed = [str(c) for c in decl.get("categories") or []]
        if text not in allowed:
            close = difflib.get_close_matches(text, allowed, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'?" if close else f"its categories: {allowed}"
            return f"{key}: '{text}' is not a category of '{column}' ({hint})"
    if kind in ("int", "float"):
        try:
            number = float(text)
        except ValueError:
            return f"{key}: '{text}' is not a number, so no {kind} value of '{column}' can match it"
        if kind == "int" and not number.is_integer():
            return f"{key}: '{text}' is not a whole number, so no int value of '{column}' can match it"
    return None


def _user_key_problems(name: str, spec: dict) -> list[str]:
    """The keys of a dataset's user-keyed mappings (labels, vitals, columns) must name declared
    columns (and, under labels, values those columns can hold): the schema cannot know them, and
    a misspelt one is otherwise ignored (a label that never matches changes every sentence)."""
    clinical = spec.get("clinical") or {}
    declared = list(clinical)
    problems = []
    for column, words in (spec.get("labels") or {}).items():
        if column not in clinical:
            problems.append(_column_hint(name, "labels", column, declared))
            continue
        for value in words or {}:
            problem = _label_value_problem(name, column, value, clinical[column])
            if problem:
                problems.append(problem)
    for column in spec.get("vitals") or {}:
        if column not in clinical:
            problems.append(_column_hint(name, "vitals", column, declared))
    if spec.get("adapter") != "demo":
        from .data.adapters.manifest import OPTIONAL, REQUIRED

        contract = REQUIRED + OPTIONAL if spec.get("adapter") == "manifest" else []
        for column in spec.get("columns") or {}:
            if column not in clinical and column not in contract:
                close = difflib.get_close_matches(str(column), contract + declared, n=1, cutoff=0.6)
                hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(contract + declared)}"
                problems.append(f"key 'datasets.{name}.columns.{column}': '{column}' is neither a contract column nor a "
                                f"declared clinical column ({hint})")
    return problems


def _training_problems(vlm: dict) -> list[str]:
    """A trainer section needs a length: max_steps (which wins) or epochs."""
    problems = []
    for key, section in (("vlm.stage1", vlm.get("stage1")), ("vlm.stage2.train", (vlm.get("stage2") or {}).get("train"))):
        if isinstance(section, dict) and section.get("max_steps") is None and section.get("epochs") is None:
            problems.append(f"keys '{key}.max_steps' and '{key}.epochs' are both null: set max_steps (optimizer steps) "
                            "or epochs (passes over the training data)")
    return problems


def check_input_paths(config: dict) -> None:
    """Every file or folder the rules read from outside the workflow, checked before any job runs.

    A wrong path otherwise stops a run hours in (a missing BERTScore model only after every
    answer has been generated) or under another key's name.  Relative paths count from the
    working directory (the workflow folder).  Paths the workflow writes (the demo's raw data,
    results/) are not checked.

    Raises:
        ConfigError: every problem at once, each naming its key, the path and what it must be.
    """
    from .resources import is_packaged, resolve_model

    problems: list[str] = []

    def need(key: str, value, kind: str, marker: str | None = None, what: str = "") -> None:
        if value is None or value == "":
            return
        try:
            path = resolve_model(value)
        except ConfigError as err:
            problems.append(f"key '{key}': {err}")
            return
        if is_packaged(value):  # a model shipped with the package: resolve_model checked it
            return
        label = f" ({what})" if what else ""
        if not path.exists():
            problems.append(f"key '{key}': {path}{label} not found; fix the path (relative paths count from the workflow folder)")
        elif kind == "file" and path.is_dir() and not (marker and (path / marker).exists()):
            problems.append(f"key '{key}': {path} is a folder; give the file{label}")
        elif kind == "folder" and not path.is_dir():
            problems.append(f"key '{key}': {path} is a file; give the folder{label}")
        elif marker and path.is_dir() and not (path / marker).exists():
            problems.append(f"key '{key}': {path} has no {marker}; it must be {what or 'a model folder'}")

    def model(key: str, value, what: str) -> None:
        if value is not None and str(value) != "minilm":
            need(key, value, "folder", "config.json", what)

    extraction = config.get("extraction") or {}
    questions = extraction.get("questions")
    if questions:
        from .resources import questions_for

        need("extraction.questions", questions_for(questions), "file", what="question templates (YAML)")
    if extraction.get("backend") in ("transformers", "vllm") and not extraction.get("url"):
        need("extraction.model", extraction.get("model"), "folder", what="a local Hugging Face model folder")
    imaging = config.get("imaging") or {}
    encoder = imaging.get("encoder") or {}
    need("imaging.encoder.checkpoint", encoder.get("checkpoint"), "file", None, "the image encoder's checkpoint")
    if encoder.get("pretrain") and encoder.get("checkpoint") is None:
        need("imaging.pretrain.phenotypes", (imaging.get("pretrain") or {}).get("phenotypes"), "file", what="phenotype table")
    model("text_encoder.model", (config.get("text_encoder") or {}).get("model"), "a transformers model folder with config.json, or minilm")
    vlm = config.get("vlm") or {}
    model("vlm.decoder", vlm.get("decoder"), "a Hugging Face causal LM folder with config.json")
    model("vlm.evaluate.bertscore_model", (vlm.get("evaluate") or {}).get("bertscore_model"),
          "the BERTScore model: a transformers model folder with config.json, or minilm")
    need("vlm.stage1.accelerate_config", (vlm.get("stage1") or {}).get("accelerate_config"), "file", what="accelerate config")
    lock_dir = (config.get("gpu") or {}).get("lock_dir")
    if lock_dir and Path(lock_dir).exists() and not Path(lock_dir).is_dir():
        problems.append(f"key 'gpu.lock_dir': {lock_dir} is a file; give a folder for the GPU lock files (created when absent)")
    for name, spec in (config.get("datasets") or {}).items():
        _check_dataset_paths(name, spec, need)
    if problems:
        lines = "\n  - ".join(problems)
        raise ConfigError(f"the configuration names {len(problems)} input path(s) that cannot be read:\n  - {lines}")


def _check_dataset_paths(name: str, spec: dict, need) -> None:
    """A dataset's raw inputs by adapter, through ``need`` (the demo's are written by the workflow)."""
    adapter, key = spec.get("adapter"), f"datasets.{name}"
    if adapter == "manifest":
        need(f"{key}.path", spec.get("path"), "file", what="the manifest table")
        need(f"{key}.image_root", spec.get("image_root"), "folder")
    elif adapter == "ct_rate":
        for field in ("reports", "metadata"):
            values = spec.get(field)
            for i, value in enumerate([values] if isinstance(values, str) else (values or [])):
                need(f"{key}.{field}" + ("" if isinstance(values, str) else f"[{i}]"), value, "file", what=f"CT-RATE {field} CSV")
        need(f"{key}.volumes" if spec.get("volumes") else f"{key}.path", spec.get("volumes") or spec.get("path"), "folder",
             what="CT-RATE volume folders")
        values = spec.get("exclude")
        for i, value in enumerate([values] if isinstance(values, str) else (values or [])):
            need(f"{key}.exclude" + ("" if isinstance(values, str) else f"[{i}]"), value, "file", what="list of volumes to exclude")
    elif adapter == "inspect":
        need(f"{key}.path", spec.get("path"), "folder", what="the INSPECT release")
        need(f"{key}.ehr", spec.get("ehr"), "file", what="EHR measurement table")
