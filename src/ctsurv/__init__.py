"""ctsurv: CT vision-language survival modelling (arXiv 2604.18250) as a library and workflow."""

__version__ = "0.1.0"
