"""Files the package ships (package data) so that the command line works in any folder.

The repository keeps the files the workflow reads (``config/questions.yaml``,
``config/config.yaml``, ``workflow/schemas/config.schema.yaml``); ``ctsurv/data/`` holds
copies of them, installed with the package, which the command line uses as its defaults.
The repository's files are the source: ``tests/test_cli_anywhere.py`` fails when a copy
differs from its source, and :data:`SOURCES` says which file to copy where.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

QUESTIONS = "questions.yaml"
DEMO_CONFIG = "demo_config.yaml"
SCHEMA = "config.schema.yaml"
#: packaged name -> the repository file it copies (relative to the repository root).
SOURCES = {
    QUESTIONS: "config/questions.yaml",
    DEMO_CONFIG: "config/config.yaml",
    SCHEMA: "workflow/schemas/config.schema.yaml",
}
#: The repository root when ctsurv runs from a source checkout (editable install), else None.
_CHECKOUT = Path(__file__).resolve().parents[2]


def packaged(name: str) -> Path:
    """Path of a packaged file (``questions.yaml``, ``demo_config.yaml``, ``config.schema.yaml``)."""
    return Path(str(resources.files("ctsurv.data").joinpath(name)))


def questions_file() -> Path:
    """The paper's six questions: the default of ``ctsurv extract-answers --questions``."""
    return packaged(QUESTIONS)


def config_schema() -> Path:
    """The config schema: the checkout's own while developing (it may be ahead of the
    packaged copy until the copy is refreshed), else the packaged copy."""
    source = _CHECKOUT / SOURCES[SCHEMA]
    return source if source.is_file() else packaged(SCHEMA)


def default_config() -> Path:
    """``config/config.yaml`` of the working directory (a workflow folder) when there is one,
    else the packaged demo configuration."""
    local = Path("config/config.yaml")
    return local if local.is_file() else packaged(DEMO_CONFIG)


def questions_for(configured: str | Path) -> Path:
    """The questions file a config names; its default ``config/questions.yaml`` falls back to
    the packaged copy outside a workflow folder."""
    path = Path(configured)
    if not path.is_file() and path.as_posix() == SOURCES[QUESTIONS]:
        return questions_file()
    return path


#: How a config names a model that ships with the package: ``packaged:demo-merlin``.
PACKAGED_PREFIX = "packaged:"


def packaged_models() -> list[str]:
    """Names of the models shipped with the package (folders of ``ctsurv/models/``)."""
    root = Path(str(resources.files("ctsurv").joinpath("models")))
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))


def resolve_model(spec: str | Path | None) -> Path | None:
    """The local path a config's model entry names.

    ``packaged:NAME`` is a model shipped with the package (``ctsurv/models/NAME/``, e.g. the
    demo's ``demo-merlin`` encoder and ``demo-radllama`` decoder); it resolves to that folder
    (a reader that needs one weight file, such as the encoder's checkpoint loader, takes the
    folder's single ``*.safetensors``).  Any other value is a user's path and passes through
    unchanged; ``None`` stays ``None``.

    Raises:
        ConfigError: ``packaged:NAME`` names no shipped model (the message lists those that exist).
    """
    if spec is None:
        return None
    text = str(spec)
    if not text.startswith(PACKAGED_PREFIX):
        return Path(spec)
    name = text[len(PACKAGED_PREFIX):].strip()
    folder = Path(str(resources.files("ctsurv").joinpath("models", name))) if name else None
    if folder is None or not folder.is_dir():
        from .errors import ConfigError

        known = ", ".join(f"{PACKAGED_PREFIX}{n}" for n in packaged_models()) or "none installed"
        raise ConfigError(f"'{text}' names no model shipped with ctsurv; packaged models: {known}")
    return folder


def is_packaged(spec: str | Path | None) -> bool:
    """Whether a config entry names a packaged model (``packaged:NAME``)."""
    return spec is not None and str(spec).startswith(PACKAGED_PREFIX)
