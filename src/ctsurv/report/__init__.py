"""ctsurv.report: results tables (the paper's Table 2), figures and BERTScore for the report.

Reads the per-model files that training and evaluation write (predictions, metrics); no
Snakemake here.
"""
