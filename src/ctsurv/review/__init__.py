"""ctsurv.review."""
