"""ctsurv.survival."""
