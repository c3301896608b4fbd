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


def test_the_workflow_refuses_a_duplicate_key_in_a_config_file(repo, tmp_path):
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "config").mkdir()
    for name in ("config.yaml", "questions.yaml"):
        shutil.copy(repo / "config" / name, tmp_path / "config" / name)
    (tmp_path / "dup.yaml").write_text("imaging:\n  size: [8, 8, 8]\n  size: [9, 9, 9]\n", encoding="utf-8")
    snakemake = Path(sys.executable).with_name("snakemake")
    run = subprocess.run([str(snakemake), "-s", str(repo / "Snakefile"), "--directory", str(tmp_path), "-n", "--cores", "1",
                          "--configfile", str(tmp_path / "config/config.yaml"), str(tmp_path / "dup.yaml")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode != 0
    assert "dup.yaml, line 3: key 'size' is given twice" in run.stdout + run.stderr
