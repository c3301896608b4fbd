"""`snakemake --sdm conda` builds the rules' environment with ctsurv in it (issue 12, item 8).

Snakemake copies envs/main.yaml to .snakemake/conda/<hash>.yaml before `conda env create`,
and conda resolves a pip entry's relative path from the env file's folder, so the old
`-e ..` pointed at .snakemake/.  There is no conda on the test machines: a fake `conda`
(info, version, config and `env create`, resolving pip paths as conda does, from the env
file's folder) lets Snakemake's real environment creation and post-deploy step run.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml

FAKE_CONDA = textwrap.dedent(
    """\
    #!{python}
    import json, os, sys
    from pathlib import Path
    import yaml
    args = sys.argv[1:]
    if args[:2] == ["info", "--json"]:
        print(json.dumps({{"conda_prefix": {prefix!r}, "platform": "linux-64"}}))
    elif args == ["--version"]:
        print("conda 24.7.1")
    elif args[:2] == ["config", "--get"]:
        print(json.dumps({{"get": {{"channel_priority": "strict"}}}}))
    elif args[:2] == ["env", "create"]:
        env_file = Path(args[args.index("--file") + 1])
        prefix = Path(args[args.index("--prefix") + 1])
        spec = yaml.safe_load(env_file.read_text())
        for dep in spec["dependencies"]:
            for req in (dep.get("pip", []) if isinstance(dep, dict) else []):
                # conda runs pip in the env file's folder: relative paths start there
                path = req.split(maxsplit=1)[1] if req.startswith("-e ") else req
                if path.startswith((".", "/")):
                    where = (env_file.parent / path).resolve()
                    if not (where / "pyproject.toml").exists():
                        sys.exit(f"Pip failed: {{where}} does not appear to be a Python project")
        (prefix / "bin").mkdir(parents=True)
        python = prefix / "bin" / "python"
        python.write_text("#!/bin/sh\\necho \\"$@\\" >> " + str(prefix / "pip.log") + "\\n"
                          "for a; do last=$a; done\\n[ -f \\"$last/pyproject.toml\\" ] || exit 3\\n")
        python.chmod(0o755)
    elif args[:1] == ["clean"]:
        pass
    else:
        sys.exit(f"fake conda: unexpected {{args}}")
    """
)


def fake_conda(root: Path) -> Path:
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True)
    conda = bin_dir / "conda"
    conda.write_text(FAKE_CONDA.format(python=sys.executable, prefix=str(root)), encoding="utf-8")
    conda.chmod(conda.stat().st_mode | stat.S_IEXEC)
    (bin_dir / "activate").write_text('export PATH="$1/bin:$PATH"\n', encoding="utf-8")
    return bin_dir


def test_env_file_has_no_relative_paths(repo):
    spec = yaml.safe_load((repo / "envs" / "main.yaml").read_text(encoding="utf-8"))
    pip = [r for d in spec["dependencies"] if isinstance(d, dict) for r in d.get("pip", [])]
    assert not [r for r in pip if r.startswith(("-e", ".", "/"))], "resolved from .snakemake/conda/, not envs/"
    assert (repo / "envs" / "main.post-deploy.sh").exists()


@pytest.mark.slow
def test_sdm_conda_creates_the_env_with_ctsurv_installed(tmp_path, repo):
    (tmp_path / "raw" / "images").mkdir(parents=True)
    rows = []
    for i in range(4):
        sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 4, 4), np.int16)), str(tmp_path / "raw" / "images" / f"s{i}.nii.gz"))
        rows.append({"study_id": f"s{i}", "patient_id": f"p{i}", "image": f"images/s{i}.nii.gz",
                     "report": "report.", "time": 10.0 + i, "event": i % 2})
    pd.DataFrame(rows).to_csv(tmp_path / "raw" / "manifest.csv", index=False)
    config = {
        "splits": {"seed": 1, "train": 0.5, "val": 0.25, "test": 0.25},
        "datasets": {"tiny": {"adapter": "manifest", "role": "survival", "path": "raw/manifest.csv",
                              "clinical": {}, "clinical_sentence": "A patient."}},
        "extraction": {"backend": "rules", "shards": 1, "questions": str(repo / "config" / "questions.yaml")},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {**os.environ, "PATH": f"{fake_conda(tmp_path / 'conda')}{os.pathsep}{os.environ['PATH']}"}
    res = subprocess.run(
        [sys.executable, "-m", "snakemake", "--sdm", "conda", "--conda-create-envs-only", "--cores", "1",
         "-s", str(repo / "Snakefile"), "--configfile", str(tmp_path / "config.yaml"), "--directory", str(tmp_path),
         "results/tiny/cohort.parquet"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env,
    )
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    logs = list((tmp_path / ".snakemake" / "conda").glob("*/pip.log"))
    assert len(logs) == 1, res.stderr[-3000:]
    # the post-deploy step installed this checkout (editable), found from the workflow's folder
    assert logs[0].read_text().split() == ["-m", "pip", "install", "-e", str(repo)]
