"""Config validation: defaults filled, every problem named by key with what was expected."""

from __future__ import annotations

import copy

import pytest

from ctsurv.config import load_yaml, validate_config
from ctsurv.errors import ConfigError


@pytest.fixture
def schema(repo):
    return load_yaml(repo / "workflow/schemas/config.schema.yaml")


@pytest.fixture
def demo_config(repo):
    return load_yaml(repo / "config/config.yaml")


def test_demo_config_is_valid(schema, demo_config):
    cfg = validate_config(demo_config, schema)
    assert set(cfg["datasets"]) == {"demo_pretrain", "demo_lung", "demo_pe"}


def test_defaults_are_filled_without_touching_the_input(schema):
    raw = {"datasets": {"mine": {"adapter": "manifest", "role": "survival", "path": "x.csv"}}}
    cfg = validate_config(raw, schema)
    assert cfg["imaging"]["size"] == [224, 224, 160]
    assert cfg["splits"]["train"] == 0.7
    assert "imaging" not in raw


def test_every_problem_is_listed_with_its_key(schema, demo_config):
    bad = copy.deepcopy(demo_config)
    bad["imaging"]["size"] = [224, "big", 160]
    bad["extraction"]["backend"] = "gpt"
    bad["datasets"]["demo_lung"]["role"] = "survial"
    bad["imagin"] = {}
    with pytest.raises(ConfigError) as err:
        validate_config(bad, schema)
    msg = str(err.value)
    assert "4 problem(s)" in msg
    assert "key 'imaging.size[1]': expected integer, got 'big'" in msg
    assert "key 'extraction.backend': expected one of ['rules', 'transformers', 'openai', 'vllm'], got 'gpt'" in msg
    assert "key 'datasets.demo_lung.role'" in msg and "'survial'" in msg
    assert "'imagin' was unexpected" in msg


def test_missing_required_key_is_named(schema):
    with pytest.raises(ConfigError, match=r"key 'datasets.x.role' is missing"):
        validate_config({"datasets": {"x": {"adapter": "manifest"}}}, schema)


def test_split_fractions_must_sum_to_one(schema, demo_config):
    bad = copy.deepcopy(demo_config)
    bad["splits"].update(train=0.8, val=0.1, test=0.2)
    with pytest.raises(ConfigError, match="add up to 1, they add up to 1.1"):
        validate_config(bad, schema)


def test_yaml_syntax_error_names_line(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("datasets:\n  a: [1, 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"c.yaml, line \d+, column \d+: not valid YAML"):
        load_yaml(f)


def test_disabled_datasets_are_dropped(schema, demo_config):
    cfg = copy.deepcopy(demo_config)
    cfg["datasets"]["demo_pretrain"]["enabled"] = False
    assert set(validate_config(cfg, schema)["datasets"]) == {"demo_lung", "demo_pe"}
    for spec in cfg["datasets"].values():
        spec["enabled"] = False
    with pytest.raises(ConfigError, match="enable at least one"):
        validate_config(cfg, schema)


def test_paper_config_layers_on_the_demo_config(repo, schema, demo_config):
    """snakemake --configfile config/paper.yaml merges it into config/config.yaml."""
    from snakemake.utils import update_config

    merged = copy.deepcopy(demo_config)
    update_config(merged, load_yaml(repo / "config/paper.yaml"))
    cfg = validate_config(merged, schema)
    assert set(cfg["datasets"]) == {"ct_rate", "lung_cancer", "inspect"}
    assert cfg["imaging"]["spacing"] == [1.5, 1.5, 3.0] and cfg["imaging"]["size"] == [224, 224, 160]
    assert cfg["imaging"]["encoder"]["layers"] == [3, 8, 36, 3] and cfg["imaging"]["encoder"]["width"] == 64
    assert cfg["extraction"]["backend"] == "vllm"
