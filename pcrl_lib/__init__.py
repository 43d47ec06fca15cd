"""pcrl_lib — the library behind the PCRL course & reproduction kit.

PCRL: Zhou et al., "Preservational Learning Improves Self-supervised Medical Image Models by
Reconstructing Diverse Contexts", ICCV 2021. The notebooks in ``notebooks/`` assemble the building
blocks defined here; nothing in a notebook re-implements library code.

Modules (one concept each): ``config`` (profiles), ``env`` (seeding, device, environment report),
``paths`` (where caches and runs live), ``fileio`` (atomic writes, JSON helpers, fingerprints), ``runs`` (run
folders, their lock, run reuse), ``checkpoint`` (torch checkpoints, RNG state), ``data`` (readers, synthetic
look-alikes, demo data, preprocessing, splits), ``transforms``, ``models`` (networks; ``models.exports``: the
export format and its loaders), ``pcrl`` (the objective), ``training`` (what both training loops share: seed
streams, epoch order, device moves), ``train`` (the pretraining loop), ``pretrain_setup`` / ``pretrain_cli``
(assembling a pretraining run; ``python -m pcrl_lib.train``), ``pretrain_runs`` (the course's pretraining runs),
``finetune``, ``metrics``, ``course`` (papermill runner, notebook records), ``course_records`` / ``claims`` /
``report`` (reading a run's records, checking the paper's claims, writing RESULTS.md), ``viz``,
``notebook_save`` (the JupyterLab save hook that keeps notebooks clean in git).
"""

__version__ = "0.1.0"
