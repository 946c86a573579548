# One dataset_description.json (and .bidsignore) per derivative folder, written from the
# output registry's folder table (echoprep.io.outputs.FOLDERS), and the config snapshot the
# description and report jobs read. Inputs, outputs, params and logs: PLAN.spec
# (echoprep.plan.specs).

from echoprep.io.atomic import write_text as _write_text

# The validated config as a file in work_dir: a config change changes this job's params, so it
# and every job that reads the file (descriptions, reports) run again. Written in the Snakemake
# process (no command line that would carry the JSON into `ps`, logs and the console).
_spec = PLAN.spec("config_snapshot")


rule config_snapshot:
    output:
        _spec.output["config"],
    log:
        _spec.log,
    localrule: True
    params:
        **_spec.params,
    message:
        "Configuration snapshot for the dataset descriptions and reports"
    run:
        _write_text(output[0], f"{params.config}\n")
        _write_text(log[0], f"wrote {output[0]}\n")


_spec = PLAN.spec("dataset_description")


rule dataset_description:
    input:
        **_spec.input,
    output:
        _spec.output["description"],
    log:
        _spec.log,
    localrule: True
    conda:
        "../../envs/echoprep.yaml"
    params:
        **_spec.params,
    message:
        "Dataset description {wildcards.folder}/"
    shell:
        "python -m echoprep describe {output:q} --source {params.source:q}"
        " --config-file {input.config:q} --folders {params.folders} 2> {log:q}"
