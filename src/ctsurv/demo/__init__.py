"""ctsurv.demo."""
