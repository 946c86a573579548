"""Names the dead-code check (``make lint``: vulture over workflow/echoprep, scripts and
benchmarks) cannot see used, each group with its reason. Vulture reads this file; nothing
imports or runs it (some entries are dataclass fields, which are not class attributes).

A name that is really dead is removed from the code, not added here.
``tests/unit/test_vulture_whitelist.py`` checks that every ``Plan`` method listed is still
called from a rule file.
"""

from argparse import ArgumentParser

from echoprep.config import validate_config
from echoprep.io.bids import Dataset
from echoprep.kernels.glm.fit import RunSolver
from echoprep.kernels.noiseceiling import NoiseCeiling
from echoprep.plan import Plan
from echoprep.simulate.geometry import distort
from echoprep.simulate.response import ResponseModel
from echoprep.stages.glm.options import GlmOptions
from echoprep.stages.spatial.options import SpatialOptions

_ = (
    # --- Snakemake: the Snakefile and workflow/rules/*.smk, which vulture does not parse ---
    validate_config,  # Snakefile
    Plan.mem_mb,  # every rule's resources
    Plan.runtime,
    Plan.log,  # every rule's log and benchmark
    Plan.benchmark,
    Plan.anat_out_args,  # anatomy.smk
    Plan.anat_t1w,
    Plan.combine_rule_params,  # combine.smk
    Plan.combine_step_outputs,
    Plan.echo_inputs,
    Plan.separate_combine_sides,
    Plan.tedana_inputs,
    Plan.tedana_options,
    Plan.tedana_params,
    Plan.folder_pattern,  # common.smk
    Plan.sessions_warning,
    Plan.analysis_mask_inputs,  # glm.smk
    Plan.analysis_mask_outputs,
    Plan.analysis_mask_params,
    Plan.glm_inputs,
    Plan.glm_out_args,
    Plan.glm_params,
    Plan.nc_subject_inputs,
    Plan.reference_glm_options,
    Plan.space_args,
    Plan.echo_constraints,  # nordic.smk, spatial.smk
    Plan.echo_rule,
    Plan.profile_group,
    Plan.chain_env,  # nordic.smk, spatial.smk (the per-run chains)
    Plan.chain_inputs,
    Plan.chain_message,
    Plan.chain_outputs,
    Plan.chain_params,
    Plan.chain_sides,
    Plan.chain_steps,
    Plan.publish_args,  # publish.smk
    Plan.publish_repeats_inputs,
    Plan.publish_roi_inputs,
    Plan.publish_session_inputs,
    Plan.publish_subject_inputs,
    Plan.comparison_inputs,  # report.smk
    Plan.comparison_subject_args,
    Plan.comparison_subject_inputs,
    Plan.diagnostics_args,
    Plan.diagnostics_inputs,
    Plan.report_args,
    Plan.report_inputs,
    Plan.roi_mask_outputs,  # rois.smk
    Plan.roi_table_inputs,
    Plan.user_roi_inputs,
    Plan.user_roi_params,
    Plan.visual_roi_inputs,
    Plan.visual_roi_variant,
    Plan.spatial_run_group,  # spatial.smk
    Plan.spatial_reference_inputs,
    Plan.spatial_reference_params,
    Plan.spatial_subject_inputs,
    # --- argparse: read by the parser itself (cli._no_abbreviations sets it) ---
    ArgumentParser().allow_abbrev,
    # --- dataclass fields = config schema keys (docs/architecture.md §4): an options class has
    # every key of its section; these are read from the config by the plan and the rules ---
    GlmOptions.all_sessions_variants,
    GlmOptions.hdf5,
    SpatialOptions.interpolation_order,
    SpatialOptions.keep_echoes,
    SpatialOptions.output_space,
    SpatialOptions.reference_echo,
    # --- pytest: independent references the tests check live code against ---
    RunSolver.ols,  # OLS betas (test_glm_algebra, test_glm_engine)
    NoiseCeiling.at_repeats,  # noise ceiling at n repeats (test_noiseceiling*)
    NoiseCeiling.nc_single,
    distort,  # the simulator's forward EPI distortion (test_simulate)
    ResponseModel.smooth_fraction,  # (test_simulate)
    Dataset.get_run,  # a run by its labels (test_bids_discovery)
)
