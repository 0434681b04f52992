"""Evaluation modes (examples grid, ...) and the resumable run directory."""
