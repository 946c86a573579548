"""GLMsingle stage: single-trial betas of one session and one preprocessing variant.

Validate → load → fit → write. The session's preprocessed BOLD runs (one per run, the output of
the echo-handling stage, native or T1w space) and their BIDS events files go in; out come, in
``glmsingle-<nordic>-<combine>/sub-X/ses-Y/func/`` (LAION-fMRI's names, ``docs/glm.md``
§11)::

    sub-X_ses-Y_task-T[_space-T1w]_stat-effect_desc-SingletrialBetas_statmap.nii.gz  4D, % BOLD
    sub-X_ses-Y_task-T_desc-SingletrialBetas_trials.tsv   session_label, run_label, label, onset
    sub-X_ses-Y_task-T[_space-T1w]_stat-rsquare_desc-R2_statmap.nii.gz
    sub-X_ses-Y_task-T[_space-T1w]_stat-rsquare_desc-OnoffR2_statmap.nii.gz  type-A ON-OFF R²
    sub-X_ses-Y_task-T[_space-T1w]_desc-HRFindex_dseg.nii.gz       0-based library index (0-19)
    sub-X_ses-Y_task-T[_space-T1w]_desc-Fracridge_statmap.nii.gz   chosen ridge fraction
    sub-X_ses-Y_task-T[_space-T1w]_desc-GLMsingle_mask.nii.gz      the voxels fitted
    sub-X_ses-Y_task-T_desc-GLMsingle_summary.json        options, runs used, pcnum, timings
    (optional) sub-X_ses-Y_task-T_desc-GLMsingle_model.h5 all fitted arrays (needs h5py)
    (optional) sub-X_ses-Y_task-T[_space-T1w]_stat-effect_desc-SingletrialBetasTypeB_statmap.nii.gz
        type-B betas (per-voxel library HRF, or the assumed HRF with ``wantlibrary: 0``; least
        squares); ``stop_at="typeb"`` fits only up to them

every image with a JSON sidecar. Only the voxels of the brain mask are fitted (a given mask --
in the workflow the session's analysis mask, :mod:`echoprep.stages.glm.mask` -- or GLMsingle's
``brainthresh`` rule on the mean image: mean > 0.1 x its 99th percentile), less any voxel
without data in some run (a constant series, e.g. all 0: left out with a warning; NaN/Inf:
``glm.nan_policy``); every map is 0 outside. The betas are those of type D
(FITHRF_GLMDENOISE_RR) when the engine computed it, else of type C, else B (``docs/glm.md``
§10: without conditions repeated across runs types C and D are switched off); the summary
records which.

Engines: ``echoprep`` (:func:`echoprep.kernels.glm.fit_glmsingle`, the default) or
``glmsingle`` (the upstream package through :mod:`echoprep.adapters.glmsingle`).

Modules: :mod:`.options` (the ``glm`` config section as :class:`GlmOptions`), :mod:`.inputs`
(runs inside the brain mask, events checks), :mod:`.fit` (engine dispatch), :mod:`.outputs`
(names and writers), :mod:`.run` (:func:`run_glm` and the ``echoprep glm`` sub-command) and
:mod:`.mask` (the session analysis mask, ``echoprep analysis-mask``).
"""

from echoprep.io.events import read_trials
from echoprep.stages.glm.fit import STOP_AT, choose_betas
from echoprep.stages.glm.inputs import (
    check_events_span,
    constant_warning,
    load_brain_mask,
    load_session,
    series_tr,
)
from echoprep.stages.glm.options import (
    ENGINE_OPTIONS,
    STAGE_SETTINGS,
    GlmOptions,
    engine_options,
    parse_glm_options,
)
from echoprep.stages.glm.outputs import (
    DEFAULT_OUTPUTS,
    OUTPUTS,
    REQUIRED_OUTPUTS,
    SPATIAL_KEYS,
    session_key,
)
from echoprep.stages.glm.run import add_arguments, run_from_args, run_glm

__all__ = [
    "DEFAULT_OUTPUTS",
    "ENGINE_OPTIONS",
    "OUTPUTS",
    "REQUIRED_OUTPUTS",
    "SPATIAL_KEYS",
    "STAGE_SETTINGS",
    "STOP_AT",
    "GlmOptions",
    "add_arguments",
    "check_events_span",
    "choose_betas",
    "constant_warning",
    "engine_options",
    "load_brain_mask",
    "load_session",
    "parse_glm_options",
    "read_trials",
    "run_from_args",
    "run_glm",
    "series_tr",
    "session_key",
]
