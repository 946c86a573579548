"""echoprep: multi-echo 7T fMRI -> NORDIC, tedana, GLMsingle single-trial betas, noise ceilings.

Run:   snakemake --configfile config/demo.yaml --cores 2          (the demo; see `make demo`)
Dry:   snakemake -n --config bids_dir=/path/to/bids                (bids_dir has no default)
HPC:   snakemake --profile profiles/slurm --config bids_dir=/path/to/bids
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))

from echoprep.config import ConfigError, validate_config
from echoprep.refusal import refuse


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


try:
    # --config values arrive as text unless plain numbers: the schema decides how to read them
    _validated = validate_config(config, command_line=workflow.config_settings.config)
except ConfigError as exc:
    refuse(str(exc))
config.clear()
config.update(_validated)


include: "workflow/rules/common.smk"
include: "workflow/rules/jobs.smk"


rule all:
    """Every output the config asks for (echoprep.plan.Plan.targets) [Snakefile]"""
    default_target: True
    input:
        all_targets,
        preflight,
    localrule: True
