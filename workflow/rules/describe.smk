# One dataset_description.json (and .bidsignore) per derivative folder, written from the
# output registry's folder table (echoprep.io.outputs.FOLDERS).


rule dataset_description:
    output:
        PLAN.description(),
    log:
        LOGS / "{folder}" / "dataset_description.log",
    localrule: True
    conda:
        "../../envs/echoprep.yaml"
    params:
        config=PLAN.config_json(),
        source=PLAN.source(),
    shell:
        "python -m echoprep describe {output} --source {params.source:q}"
        " --config-json {params.config:q} 2> {log}"
