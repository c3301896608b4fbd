"""A wrong key stops the run, as the README promises (issue 12, item 21).

Misspelled keys in every section and dataset entry, duplicate YAML keys and undeclared
placeholders in the clinical sentence are errors that name the key and the likely fix.
"""

from __future__ import annotations

import copy

import pytest

from ctsurv.config import load_yaml, validate_config
from ctsurv.errors import ConfigError


@pytest.fixture
def schema(repo):
    return load_yaml(repo / "workflow/schemas/config.schema.yaml")


@pytest.fixture
def demo(repo):
    return load_yaml(repo / "config/config.yaml")


def merged(base: dict, top: dict) -> dict:
    """``--configfile top`` over ``base`` as Snakemake merges them (nested dicts updated)."""
    from snakemake.utils import update_config

    out = copy.deepcopy(base)
    update_config(out, copy.deepcopy(top))
    return out


def test_both_repository_configs_validate(repo, schema, demo):
    assert set(validate_config(demo, schema)["datasets"]) == {"demo_pretrain", "demo_lung", "demo_pe"}
    paper = validate_config(merged(demo, load_yaml(repo / "config/paper.yaml")), schema)
    assert set(paper["datasets"]) == {"ct_rate", "lung_cancer", "inspect"}


@pytest.mark.parametrize("path, wrong, right", [
    ("imaging", "spacng", "spacing"),
    ("imaging.encoder", "chekpoint", "checkpoint"),
    ("extraction", "backnd", "backend"),
    ("mining", "top_m", "top_n"),
    ("review", "workbok", "workbook"),
    ("survival", "hiden", "hidden"),
    ("gpu", "lockdir", "lock_dir"),
    ("datasets.demo_lung", "use_source_split", "use_source_splits"),
    ("datasets.demo_pe.clinical.age", "maximum", "max"),
    ("vlm", "decodr", "decoder"),
])
def test_a_misspelled_key_is_reported_with_its_path_and_the_key_meant(schema, demo, path, wrong, right):
    bad = copy.deepcopy(demo)
    node = bad
    for part in path.split("."):
        node = node.setdefault(part, {})
    node[wrong] = 1
    with pytest.raises(ConfigError) as err:
        validate_config(bad, schema)
    assert f"key '{path}.{wrong}' is not a known key" in str(err.value)
    assert f"did you mean '{path}.{right}'?" in str(err.value)


def test_a_duplicate_yaml_key_is_an_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("imaging:\n  spacing: [1, 1, 1]\n  size: [8, 8, 8]\n  spacing: [2, 2, 2]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"c.yaml, line 4: key 'spacing' is given twice in the same mapping \(first on line 2\)"):
        load_yaml(path)
    path.write_text("a: {x: 1, x: 2}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="key 'x' is given twice"):
        load_yaml(path)
    path.write_text("a: {x: 1}\nb: {x: 2}\n", encoding="utf-8")  # the same key in two mappings is fine
    assert load_yaml(path) == {"a": {"x": 1}, "b": {"x": 2}}


def test_an_undeclared_placeholder_in_the_clinical_sentence_is_an_error(schema, demo):
    bad = copy.deepcopy(demo)
    bad["datasets"]["demo_pe"]["clinical_sentence"] = "A {agee}-year-old {sex}, pulse {pulse:.0f} bpm, {bmi}."
    with pytest.raises(ConfigError) as err:
        validate_config(bad, schema)
    msg = str(err.value)
    assert "key 'datasets.demo_pe.clinical_sentence': placeholder '{agee}'" in msg and "did you mean '{age}'?" in msg
    assert "placeholder '{bmi}'" in msg and "{pulse" not in msg and "2 problem(s)" in msg


def test_clinical_ranges_must_make_sense(schema, demo):
    bad = copy.deepcopy(demo)
    bad["datasets"]["demo_lung"]["clinical"]["age"].update(min=120, max=0)
    bad["datasets"]["demo_lung"]["clinical"]["sex"]["min"] = 0
    with pytest.raises(ConfigError) as err:
        validate_config(bad, schema)
    assert "clinical.age': min 120 is larger than max 0" in str(err.value)
    assert "clinical.sex': min/max apply to int and float columns" in str(err.value)


def dry_run_with(repo, tmp_path, name: str, text: str):
    """``snakemake -n`` of the repository's workflow in ``tmp_path`` with the shipped config and the
    config file ``name`` holding ``text`` on top; the finished process."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "config").mkdir()
    for shipped in ("config.yaml", "questions.yaml"):
        shutil.copy(repo / "config" / shipped, tmp_path / "config" / shipped)
    (tmp_path / name).write_text(text, encoding="utf-8")
    snakemake = Path(sys.executable).with_name("snakemake")
    return subprocess.run([str(snakemake), "-s", str(repo / "Snakefile"), "--directory", str(tmp_path), "-n", "--cores", "1",
                           "--configfile", str(tmp_path / "config/config.yaml"), str(tmp_path / name)],
                          capture_output=True, text=True, timeout=300)


def test_the_workflow_refuses_a_duplicate_key_in_a_config_file(repo, tmp_path):
    run = dry_run_with(repo, tmp_path, "dup.yaml", "imaging:\n  size: [8, 8, 8]\n  size: [9, 9, 9]\n")
    assert run.returncode != 0
    assert "dup.yaml, line 3: key 'size' is given twice" in run.stdout + run.stderr


# -- issue 23 item 3: every section is closed; user-keyed mappings are checked against what they name --

# Mappings whose keys the user chooses (names, not settings): the schema cannot close them, so
# each is checked in code against what it names (tested below with a misspelt key).
USER_KEYED = {
    "datasets": "dataset names (pattern)",
    "datasets.*.clinical": "declares the clinical columns",
    "datasets.*.columns": "contract or declared clinical column -> table column",
    "datasets.*.vitals": "declared clinical column -> EHR code",
    "datasets.*.labels": "declared clinical column -> {value: words}",
    "datasets.*.labels.*": "values of the column -> words",
}


def _schema_nodes(node, path=""):
    """(dotted path, schema node) of every object schema; '*' for a user-chosen key."""
    if not isinstance(node, dict):
        return
    if node.get("type") == "object" or "properties" in node:
        yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from _schema_nodes(sub, f"{path}.{name}" if path else name)
    if isinstance(node.get("additionalProperties"), dict):
        yield from _schema_nodes(node["additionalProperties"], f"{path}.*" if path else "*")


def test_every_object_in_the_schema_refuses_unknown_keys(schema):
    open_ = [path or "(top level)" for path, node in _schema_nodes(schema)
             if node.get("additionalProperties") is not False and path not in USER_KEYED]
    assert open_ == [], f"sections of the schema that accept any key: {open_}"
    for path in USER_KEYED:
        node = dict(_schema_nodes(schema))[path]
        assert isinstance(node.get("additionalProperties"), dict), f"{path}: its values must have a schema"


def _schema_at(schema, parts):
    node = schema
    for part in parts:
        props = node.get("properties", {})
        node = props[part] if part in props else node.get("additionalProperties")
        if not isinstance(node, dict):
            return None
    return node


def _mappings(value, parts=()):
    if isinstance(value, dict):
        yield parts
        for key, sub in value.items():
            yield from _mappings(sub, parts + (key,))


def _pattern(parts):
    """``datasets.demo_pe.labels.pe_acute`` -> ``datasets.*.labels.*``."""
    out = [str(p) for p in parts]
    if len(out) > 1 and out[0] == "datasets":
        out[1] = "*"
        if len(out) > 3 and out[2] in ("clinical", "columns", "vitals", "labels"):
            out[3] = "*"
    return ".".join(out)


@pytest.mark.parametrize("which", ["demo", "paper"])
def test_a_stray_key_in_any_mapping_of_the_loaded_config_is_an_error(repo, schema, demo, which):
    """Walk the loaded config: every mapping's schema closes it, and a stray key in any of them is
    refused naming its path (vlm.stage2.train, the one section left open, took 'warmup_step')."""
    config = demo if which == "demo" else merged(demo, load_yaml(repo / "config/paper.yaml"))
    loaded = validate_config(config, schema)
    checked = 0
    for parts in _mappings(loaded):
        pattern = _pattern(parts)
        if pattern in USER_KEYED:
            continue
        node = _schema_at(schema, parts)
        assert node is not None and node.get("additionalProperties") is False, f"'{'.'.join(parts)}' accepts any key"
        bad = copy.deepcopy(config)
        target = bad
        for part in parts:
            target = target.setdefault(part, {})
        target["zz_stray"] = 1
        with pytest.raises(ConfigError) as err:
            validate_config(bad, schema)
        where = ".".join(map(str, parts + ("zz_stray",)))
        assert f"key '{where}' is not a known key" in str(err.value)
        checked += 1
    assert checked > 30


@pytest.mark.parametrize("section, value, expected", [
    ({"warmup_step": 5}, None, "key 'vlm.stage2.train.warmup_step' is not a known key ('warmup_step' was unexpected; "
                               "did you mean 'vlm.stage2.train.warmup_steps'?)"),
    ({"max_step": 5, "max_steps": None, "epochs": None}, None, "key 'vlm.stage2.train.max_step' is not a known key"),
    ({"lr": -1}, None, "key 'vlm.stage2.train.lr': -1 is less than or equal to the minimum of 0"),
    ({"max_steps": None, "epochs": None}, None, "keys 'vlm.stage2.train.max_steps' and 'vlm.stage2.train.epochs' are both null"),
])
def test_stage2_training_settings_are_checked(schema, demo, section, value, expected):
    bad = copy.deepcopy(demo)
    bad["vlm"]["stage2"]["train"].update(section)
    with pytest.raises(ConfigError) as err:
        validate_config(bad, schema)
    assert expected in str(err.value)


def test_an_emptied_stage2_training_section_takes_documented_defaults(schema, demo):
    from ctsurv.vlm.trainer import TrainSettings

    cfg = copy.deepcopy(demo)
    cfg["vlm"]["stage2"]["train"] = {}
    train = validate_config(cfg, schema)["vlm"]["stage2"]["train"]
    assert train["warmup_steps"] == 20 and train["epochs"] == 2 and train["max_steps"] is None
    settings = TrainSettings.from_dict({**train, "max_steps": 7})  # max_steps overrides epochs
    assert settings.max_steps == 7 and settings.epochs is None


@pytest.mark.parametrize("dataset, edit, expected", [
    ("demo_pe", lambda s: s["labels"].update(pe_acut={True: "x"}),
     "key 'datasets.demo_pe.labels.pe_acut': 'pe_acut' is not a declared clinical column (did you mean 'pe_acute'?)"),
    ("demo_pe", lambda s: s["labels"]["pe_acute"].update(ture="acute"),
     "key 'datasets.demo_pe.labels.pe_acute.ture': 'ture' is not a value of the bool column 'pe_acute'; use true or false"),
    ("demo_lung", lambda s: s.update(labels={"smoking": {"formr": "a former smoker"}}),
     "key 'datasets.demo_lung.labels.smoking.formr': 'formr' is not a category of 'smoking' (did you mean 'former'?)"),
    ("demo_lung", lambda s: s.update(labels={"age": {"sixty": "x"}}),
     "key 'datasets.demo_lung.labels.age.sixty': 'sixty' is not a number"),
    ("demo_lung", lambda s: s.update(labels={"smoking": {"former": 3}}),
     "key 'datasets.demo_lung.labels.smoking.former': expected string, got 3"),
    ("demo_pe", lambda s: s.update(vitals={"pulse_rate": "8867-4"}),
     "key 'datasets.demo_pe.vitals.pulse_rate': 'pulse_rate' is not a declared clinical column (did you mean 'pulse'?)"),
    ("demo_pe", lambda s: s.update(adapter="manifest", path="m.csv", columns={"stuy_id": "id"}),
     "key 'datasets.demo_pe.columns.stuy_id': 'stuy_id' is neither a contract column nor a declared clinical column "
     "(did you mean 'study_id'?)"),
    ("demo_lung", lambda s: s["clinical"]["smoking"].pop("categories"),
     "key 'datasets.demo_lung.clinical.smoking.categories' is missing or empty: a category column needs its allowed values"),
])
def test_user_keyed_mappings_name_declared_columns_and_values(schema, demo, dataset, edit, expected):
    """A misspelt labels entry silently changed every prompt of the cohort ('..., no, temperature ...')."""
    bad = copy.deepcopy(demo)
    bad["datasets"][dataset].setdefault("labels", {})
    edit(bad["datasets"][dataset])
    with pytest.raises(ConfigError) as err:
        validate_config(bad, schema)
    assert expected in str(err.value)


# -- issue 23 item 3: every path a rule reads is checked before the first job --------------

def _paths_config(schema, demo, tmp_path):
    cfg = copy.deepcopy(demo)
    cfg["datasets"]["my_lung"] = {"adapter": "manifest", "role": "survival", "path": str(tmp_path / "m.csv"),
                                  "image_root": str(tmp_path / "images")}
    cfg["datasets"]["my_ct_rate"] = {"adapter": "ct_rate", "role": "pretrain", "reports": [str(tmp_path / "r.csv")],
                                     "metadata": str(tmp_path / "meta.csv"), "volumes": str(tmp_path / "vol")}
    cfg["datasets"]["my_pe"] = {"adapter": "inspect", "role": "survival", "path": str(tmp_path / "inspect"),
                                "ehr": str(tmp_path / "ehr.parquet")}
    return validate_config(cfg, schema)


PATH_KEYS = {  # key -> (set it, what the message says)
    "vlm.evaluate.bertscore_model": (lambda c, p: c["vlm"]["evaluate"].update(bertscore_model=str(p / "bert")), "not found"),
    "vlm.decoder": (lambda c, p: c["vlm"].update(decoder=str(p)), "has no config.json"),
    "text_encoder.model": (lambda c, p: c["text_encoder"].update(model=str(p / "longformer")), "not found"),
    "imaging.encoder.checkpoint": (lambda c, p: c["imaging"]["encoder"].update(checkpoint=str(p)), "is a folder; give the file"),
    "extraction.model": (lambda c, p: c["extraction"].update(backend="transformers", model=str(p / "mistral")), "not found"),
    "extraction.questions": (lambda c, p: c["extraction"].update(questions=str(p / "q.yaml")), "not found"),
    "vlm.stage1.accelerate_config": (lambda c, p: c["vlm"]["stage1"].update(accelerate_config=str(p / "a.yaml")), "not found"),
    "gpu.lock_dir": (lambda c, p: c["gpu"].update(lock_dir=str(p / "lockfile")), "is a file"),
    "datasets.my_lung.path": (None, "not found"), "datasets.my_lung.image_root": (None, "not found"),
    "datasets.my_ct_rate.reports[0]": (None, "not found"), "datasets.my_ct_rate.metadata": (None, "not found"),
    "datasets.my_ct_rate.volumes": (None, "not found"), "datasets.my_pe.path": (None, "not found"),
    "datasets.my_pe.ehr": (None, "not found"),
}


def test_every_input_path_of_the_config_is_checked_under_its_own_key(schema, demo, tmp_path):
    from ctsurv.config import check_input_paths

    check_input_paths(validate_config(demo, schema))  # the demo reads nothing from outside
    (tmp_path / "lockfile").write_text("", encoding="utf-8")
    cfg = _paths_config(schema, demo, tmp_path)
    for key, (set_it, _) in PATH_KEYS.items():
        if set_it:
            set_it(cfg, tmp_path)
    with pytest.raises(ConfigError) as err:
        check_input_paths(cfg)
    lines = str(err.value).splitlines()[1:]
    assert len(lines) == len(PATH_KEYS), str(err.value)
    for key, (_, says) in PATH_KEYS.items():
        line = next((l for l in lines if f"key '{key}'" in l), None)
        assert line is not None and says in line, (key, str(err.value))


def test_the_workflow_checks_input_paths_before_any_job(repo, tmp_path):
    """A missing BERTScore model was reported as 'text_encoder.model', after every answer was generated."""
    run = dry_run_with(repo, tmp_path, "paths.yaml", "vlm:\n  evaluate:\n    bertscore_model: models/no-such-bert\n")
    out = run.stdout + run.stderr
    assert run.returncode != 0
    assert "key 'vlm.evaluate.bertscore_model': models/no-such-bert (the BERTScore model" in out and "not found" in out
    assert "text_encoder.model" not in out and "Job stats" not in out


def test_the_bertscore_model_is_named_by_its_own_key_when_scoring(tmp_path):
    from ctsurv.report.bertscore import BertScoreModel

    with pytest.raises(ConfigError, match=r"^vlm.evaluate.bertscore_model: .*no-bert is not found"):
        BertScoreModel(model=str(tmp_path / "no-bert")).folder()
