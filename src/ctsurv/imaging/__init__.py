"""ctsurv.imaging."""
