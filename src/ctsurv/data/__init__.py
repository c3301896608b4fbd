"""ctsurv.data."""
