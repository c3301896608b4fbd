"""ctsurv.mining."""
