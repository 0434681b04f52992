"""The I-ASIDE job: spectral importance of several models, resumable by coalition blocks."""
