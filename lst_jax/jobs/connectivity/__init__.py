"""Connectivity jobs: barrier and detector runs over models (cached units), the bypass,
synthetic and untrained demos, and the `lst-jax connectivity` subcommands."""
