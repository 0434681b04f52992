"""The workloads of `lst-jax bench`, one module each: `run(workload, case, ctx) -> dict`."""
