"""`lst-jax bench`: lst_jax against PyTorch, side by side in one process, on the devices found.

Modules: `plan` (suites, batch sizes), `cases` (models and their PyTorch twins), `workloads`
(LST, I-ASIDE, connectivity, hull grid), `timing` (budget, synchronised timers),
`environment` (machine, versions, precision), `report` (bench.json / bench.md), `runner`
(the command). PyTorch twins and the authors' procedures: `torch_twins`, `torch_models`,
`torch_iaside`, `torch_procedures` (imported only when torch is used).
"""
