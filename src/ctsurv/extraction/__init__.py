"""Answer extraction: the six questions answered from each report by a backend."""
