"""Packaged model names (``packaged:NAME``) resolve through ctsurv.resources.resolve_model."""

from pathlib import Path

import pytest

from ctsurv.errors import ConfigError
from ctsurv.resources import is_packaged, packaged_models, resolve_model


def test_paths_and_none_pass_through():
    assert resolve_model(None) is None
    assert resolve_model("some/folder") == Path("some/folder")
    assert not is_packaged("some/folder") and is_packaged("packaged:demo-merlin")


def test_unknown_packaged_name_lists_the_shipped_ones():
    with pytest.raises(ConfigError, match=r"packaged:no-such-model.*packaged models"):
        resolve_model("packaged:no-such-model")


def test_every_shipped_model_resolves_to_its_folder():
    for name in packaged_models():
        folder = resolve_model(f"packaged:{name}")
        assert folder.is_dir() and folder.name == name
