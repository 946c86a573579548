# Anatomy per subject: N4, brain mask, tissue classes, T1w <-> template transforms (anat/).


rule anatomy_description:
    output:
        ANAT_ROOT / "dataset_description.json",
    log:
        LOGS / "anat" / "dataset_description.log",
    localrule: True
    conda:
        "../../envs/spatial.yaml"
    params:
        config=config_json(),
        source=Path(config["bids_dir"]).resolve(),
    shell:
        "python -m echoprep describe anatomy {output} --source {params.source:q}"
        " --config-json {params.config:q} 2> {log}"


rule anatomy:
    input:
        t1w=anat_t1w,
    output:
        **anat_outputs(),
    log:
        LOGS / "anat" / "sub-{subject}.log",
    benchmark:
        BENCH / "anat" / "sub-{subject}.tsv"
    conda:
        "../../envs/spatial.yaml"
    threads: 2
    resources:
        mem_mb=lambda wc, attempt: 6000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
    params:
        options=anat_options(),
        seed=config["seed"],
        out=anat_out_args,
    shell:
        "python -m echoprep anatomy --t1w {input.t1w:q} --options-json {params.options:q}"
        " --seed {params.seed} --threads {threads} --out {params.out} 2> {log}"
