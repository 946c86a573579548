"""Names the dead-code check (``make lint``: vulture over workflow/echoprep, scripts and
benchmarks) cannot see used, each group with its reason. Vulture reads this file; nothing
imports or runs it (some entries are dataclass fields, which are not class attributes).

A name that is really dead is removed from the code, not added here.
``tests/unit/test_vulture_whitelist.py`` checks that every ``Plan`` method listed is still
called from a rule file, every ``RuleSpec`` field listed still read by one, and every rule
family method listed still the name of one of its family's rules.
"""

from argparse import ArgumentParser

from echoprep.config import validate_config
from echoprep.io.bids import Dataset
from echoprep.kernels.fidelity import HeldoutFidelity
from echoprep.kernels.glm.fit import RunSolver
from echoprep.kernels.noiseceiling import NoiseCeiling
from echoprep.plan import Plan, RuleSpec, discovery_options
from echoprep.plan.families.chains import ChainRules
from echoprep.plan.families.combine import CombineRules
from echoprep.plan.families.comparison import ComparisonRules
from echoprep.plan.families.describe import DescribeRules
from echoprep.plan.families.glm import GlmRules
from echoprep.plan.families.noiseceiling import NoiseCeilingRules
from echoprep.plan.families.planted import PlantedRules
from echoprep.plan.families.publish import PublishRules
from echoprep.plan.families.report import ReportRules
from echoprep.plan.families.rois import RoiRules
from echoprep.plan.families.spatial import SpatialRules
from echoprep.plan.families.surface import SurfaceRules
from echoprep.refusal import refuse
from echoprep.simulate.geometry import distort
from echoprep.simulate.response import ResponseModel
from echoprep.stages.glm.options import GlmOptions
from echoprep.stages.spatial.options import SpatialOptions
from echoprep.stages.surface import SurfaceOptions

_ = (
    # --- Snakemake: the Snakefile and workflow/rules/*.smk, which vulture does not parse ---
    validate_config,  # Snakefile
    refuse,  # Snakefile, common.smk: a refused config, input or plan
    discovery_options,  # common.smk: discover()'s arguments from the config
    Plan.specs,  # jobs.smk: every rule's spec (echoprep.plan.front)
    Plan.spec_of,  # jobs.smk: a job's rule's spec, by the rule's name
    RuleSpec.threads,  # jobs.smk: threads: _spec.threads
    RuleSpec.wildcard_constraints,  # the spec's fields that only rule files read
    RuleSpec.conda,
    RuleSpec.benchmark,
    Plan.folder_pattern,  # common.smk
    Plan.sessions_warning,
    Plan.sdc_summary,
    Plan.surface_summary,
    Plan.gradient_summary,
    Plan.reference_note,
    Plan.echo_note,
    # --- the rule families: Plan.spec calls the method of a rule's name (getattr) ---
    ChainRules.spatial_resample,
    CombineRules.single_echo,
    CombineRules.tedana_nordic,
    ComparisonRules.comparison_subject,
    DescribeRules.config_snapshot,
    DescribeRules.dataset_description,
    GlmRules.analysis_mask,
    GlmRules.glm_reference,
    GlmRules.glm_heldout,
    NoiseCeilingRules.noiseceiling_session,
    NoiseCeilingRules.noiseceiling_subject,
    NoiseCeilingRules.noiseceiling_repeats,
    PlantedRules.planted_glm,
    PublishRules.publish_session,
    PublishRules.publish_subject,
    PublishRules.publish_repeats,
    PublishRules.publish_roi,
    PublishRules.publish_surface,
    SurfaceRules.surface_anatomy,
    SurfaceRules.surface_session,
    SurfaceRules.surface_subject,
    SurfaceRules.surface_bold,
    ReportRules.diagnostics,
    ReportRules.subject_report,
    RoiRules.rois_visual,
    RoiRules.rois_mask,
    RoiRules.rois_table,
    SpatialRules.spatial_run,
    SpatialRules.spatial_subject,
    # --- argparse: read by the parser itself (cli._no_abbreviations sets it) ---
    ArgumentParser().allow_abbrev,
    # --- dataclass fields = config schema keys (docs/architecture.md §4): an options class has
    # every key of its section; these are read from the config by the plan and the rules ---
    GlmOptions.all_sessions_variants,
    GlmOptions.hdf5,
    SpatialOptions.interpolation_order,
    SpatialOptions.gradient_coefficients,
    SpatialOptions.keep_echoes,
    SpatialOptions.output_space,
    SpatialOptions.reference_echo,
    SpatialOptions.sdc,
    SurfaceOptions.freesurfer_dir,  # read by the plan (echoprep.plan.surfaces)
    SurfaceOptions.fsaverage,
    # --- pytest: independent references the tests check live code against ---
    RunSolver.ols,  # OLS betas (test_glm_algebra, test_glm_engine)
    NoiseCeiling.at_repeats,  # noise ceiling at n repeats (test_noiseceiling*)
    NoiseCeiling.nc_single,
    distort,  # the simulator's forward EPI distortion (test_simulate)
    ResponseModel.smooth_fraction,  # (test_simulate)
    Dataset.get_run,  # a run by its labels (test_bids_discovery)
    HeldoutFidelity.truth_scale,  # one reference's truth scale (test_fidelity)
    HeldoutFidelity.trial_truth_scale,
)
