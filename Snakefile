"""echoprep: multi-echo 7T fMRI -> NORDIC, tedana, GLMsingle single-trial betas, noise ceilings.

Run:   snakemake --configfile config/demo.yaml --cores 2
Dry:   snakemake -n
HPC:   snakemake --profile profiles/slurm
"""

import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))

from echoprep.config import ConfigError, validate_config


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


try:
    _validated = validate_config(config)
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None
config.clear()
config.update(_validated)


include: "workflow/rules/common.smk"
include: "workflow/rules/describe.smk"
include: "workflow/rules/nordic.smk"
include: "workflow/rules/anatomy.smk"
include: "workflow/rules/spatial.smk"
include: "workflow/rules/combine.smk"
include: "workflow/rules/glm.smk"
include: "workflow/rules/rois.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        all_targets(),
    localrule: True
