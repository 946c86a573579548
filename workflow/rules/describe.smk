# One dataset_description.json (and .bidsignore) per derivative folder, written from the
# output registry's folder table (echoprep.io.outputs.FOLDERS), and the config snapshot the
# description and report jobs read.

from echoprep.io.atomic import write_text as _write_text


# The validated config as a file in work_dir: a config change changes this job's params, so it
# and every job that reads the file (descriptions, reports) run again. Written in the Snakemake
# process (no command line that would carry the JSON into `ps`, logs and the console).
rule config_snapshot:
    output:
        PLAN.config_file(),
    log:
        PLAN.log("config_snapshot"),
    localrule: True
    params:
        config=PLAN.config_json(),
    message:
        "Configuration snapshot for the dataset descriptions and reports"
    run:
        _write_text(output[0], f"{params.config}\n")
        _write_text(log[0], f"wrote {output[0]}\n")


rule dataset_description:
    input:
        config=PLAN.config_file(),
    output:
        PLAN.description(),
    log:
        PLAN.log("dataset_description"),
    localrule: True
    conda:
        "../../envs/echoprep.yaml"
    params:
        source=PLAN.source(),
    message:
        "Dataset description {wildcards.folder}/"
    shell:
        "python -m echoprep describe {output} --source {params.source:q}"
        " --config-file {input.config:q} 2> {log}"
