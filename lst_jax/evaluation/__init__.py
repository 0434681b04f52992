"""Evaluation modes (examples grid and geometry figures, full evaluation with Tables 1-2),
paper-style tables and the resumable run directory."""
