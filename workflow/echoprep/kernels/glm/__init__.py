"""Our GLMsingle engine (FITHRF_GLMDENOISE_RR): single-trial betas as pure array code.

Implemented from ``shared/specs/glmsingle.md`` (our description of GLMsingle, Prince et al. 2022,
eLife 11:e77599). Modules:

- :mod:`.hrf`: HRF library and canonical HRF (SPM double gammas, PCHIP resampling at TR);
- :mod:`.design`: design validation, single-trial bookkeeping, polynomial nuisance basis;
- :mod:`.data`: data layout checks, voxel chunks, polynomial projection;
- :mod:`.fit`: per-run projected least squares batched over voxels, R²;
- :mod:`.noise`: noise pool and per-run PCs;
- :mod:`.xval`: cross-validation badness;
- :mod:`.ridge`: fractional ridge and autoscale;
- :mod:`.threshold`: ON-OFF R² tail threshold;
- :mod:`.options`: option names, defaults and checks;
- :mod:`.engine`: :func:`fit_glmsingle`, the orchestration of types A-D.
"""

from echoprep.kernels.glm.engine import fit_glmsingle
from echoprep.kernels.glm.hrf import canonical_hrf, hrf_library

__all__ = ["canonical_hrf", "fit_glmsingle", "hrf_library"]
