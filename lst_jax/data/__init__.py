"""Data sources: the shipped digits, scikit-image sample photos."""
