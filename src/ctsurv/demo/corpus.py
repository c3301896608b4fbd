"""A report corpus for pre-training the demo decoder: the generator's reports, no volumes.

RadLLaMA read radiology reports of every kind before it saw a CT.  ``demo-radllama`` does the
same on reports of the demo generator's three kinds (general chest CTs, lung cancer staging,
CT pulmonary angiograms), planned with a seed of its own: :func:`report_corpus` plans the
studies (scene, findings and report; no voxels are rendered, so tens of thousands of reports
take seconds) and keeps one report per patient.  None of these patients is in a demo dataset
as long as the seed differs from the demo's (``demo.seed``): every patient's generator is
spawned from ``SeedSequence([seed, kind])``.
"""

from __future__ import annotations

import math
from typing import Mapping

from ..errors import ConfigError
from .cohort import plan_dataset

#: share of each generator kind in the corpus (the demo's pretrain kind, then the two report
#: languages of the survival kinds, as a radiology corpus holds staging and CTPA reports too)
DEFAULT_MIX = {"pretrain": 0.6, "lung": 0.2, "pe": 0.2}


def kind_counts(n: int, mix: Mapping[str, float]) -> dict[str, int]:
    """Reports per kind: ``n`` split by ``mix`` (shares normalised; rounding goes to the first kind)."""
    if n < 1:
        raise ConfigError(f"a report corpus needs at least 1 report, got {n}")
    unknown = sorted(set(mix) - {"pretrain", "lung", "pe"})
    if unknown or not mix or any(v < 0 for v in mix.values()) or sum(mix.values()) <= 0:
        raise ConfigError(f"corpus mix {dict(mix)}: shares must be >= 0 over the kinds pretrain, lung, pe "
                          f"(unknown: {unknown})")
    total = sum(mix.values())
    counts = {k: int(math.floor(n * v / total)) for k, v in mix.items()}
    first = next(k for k, v in mix.items() if v > 0)
    counts[first] += n - sum(counts.values())
    return {k: c for k, c in counts.items() if c > 0}


def report_corpus(n: int, seed: int, mix: Mapping[str, float] | None = None) -> list[str]:
    """``n`` reports (one per patient) of the generator's kinds in ``mix``, planned with ``seed``.

    The order is kind by kind, patients in order; the same ``n``, ``seed`` and ``mix`` give
    the same list.
    """
    reports: list[str] = []
    for kind, count in kind_counts(n, mix or DEFAULT_MIX).items():
        # pretrain plans add second reconstructions (same report) for a quarter of the patients
        planned = plan_dataset(kind, count if kind != "pretrain" else int(count * 1.4) + 2, seed)
        seen: set[str] = set()
        kept = 0
        for plan in planned:
            if plan.patient_id in seen:
                continue
            seen.add(plan.patient_id)
            reports.append(plan.report)
            kept += 1
            if kept == count:
                break
    return reports
