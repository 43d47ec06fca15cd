"""pcrl_lib — the library behind the PCRL course & reproduction kit.

PCRL: Zhou et al., "Preservational Learning Improves Self-supervised Medical Image Models by
Reconstructing Diverse Contexts", ICCV 2021. The notebooks in ``notebooks/`` assemble the building
blocks defined here; nothing in a notebook re-implements library code.

Modules (one concept each): ``config`` (profiles), ``env`` (seeding, device, environment report),
``paths`` (where caches and runs live), ``course`` (papermill runner and records), ``data`` (readers,
synthetic look-alikes, demo data, preprocessing), ``transforms``, ``models``, ``pcrl`` (the objective),
``train``, ``finetune``, ``metrics``, ``viz``.
"""

__version__ = "0.1.0"
