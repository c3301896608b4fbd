"""The embedded demo cohorts: synthetic chest CTs, reports, clinical tables and follow-up.

``generate_demo(outdir, seed, n_pretrain, n_lung, n_pe)`` writes demo_pretrain, demo_lung
and demo_pe; see :mod:`ctsurv.demo.generate` for the files and each dataset's README.md
for its hazard and columns.
"""

from .generate import generate_dataset, generate_demo

__all__ = ["generate_dataset", "generate_demo"]
