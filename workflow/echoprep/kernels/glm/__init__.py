"""Our GLMsingle engine (FITHRF_GLMDENOISE_RR): single-trial betas as pure array code.

Implemented from GLMsingle (Prince et al. 2022, eLife 11:e77599); our description of it and of
the decisions that differ is docs/glm.md. Modules:

- :mod:`.hrf`: HRF library and canonical HRF (SPM double gammas, PCHIP resampling at TR);
- :mod:`.design`: design validation, single-trial bookkeeping, polynomial nuisance basis;
- :mod:`.data`: data layout checks, voxel chunks, polynomial projection;
- :mod:`.fit`: per-run projected least squares batched over voxels, R²;
- :mod:`.noise`: noise pool and per-run PCs;
- :mod:`.xval`: cross-validation badness;
- :mod:`.ridge`: fractional ridge and autoscale;
- :mod:`.threshold`: ON-OFF R² tail threshold;
- :mod:`.options`: option names and checks (the configurable options' defaults are the config
  schema's);
- :mod:`.state`: the state carried between the passes over the data;
- :mod:`.typeb`: the type-B pass (library HRF per voxel) and the GLMdenoise cross-validation;
- :mod:`.typecd`: types C (GLMdenoise) and D (fractional ridge);
- :mod:`.engine`: :func:`fit_glmsingle`, the orchestration of types A-D;
- :mod:`.device`, :mod:`.device_passes`, :mod:`.device_xval`, :mod:`.device_typecd`,
  :mod:`.device_ops`: the heavy steps on a torch device (option ``device``; docs/glm.md §14,
  "GPU");
- :mod:`.voxels`: which voxels a session's fit uses (bright-voxel rule, voxels without data).

Synthetic test sessions: :mod:`echoprep.simulate.glm_session`.
"""

from echoprep.kernels.glm.engine import fit_glmsingle
from echoprep.kernels.glm.hrf import canonical_hrf, hrf_library
from echoprep.kernels.glm.options import REQUIRED_OPTIONS

__all__ = ["REQUIRED_OPTIONS", "canonical_hrf", "fit_glmsingle", "hrf_library"]
