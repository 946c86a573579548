# Anatomy per subject: N4, brain mask, tissue classes, T1w <-> template transforms (anat/).


rule anatomy:
    input:
        t1w=PLAN.anat_t1w,
    output:
        **PLAN.anat_outputs(),
    log:
        PLAN.log("anatomy"),
    benchmark:
        PLAN.benchmark("anatomy")
    conda:
        "../../envs/spatial.yaml"
    threads: 2
    resources:
        mem_mb=PLAN.mem_mb("anatomy"),
        runtime=PLAN.runtime("anatomy"),
    params:
        options=PLAN.options("anatomy"),
        seed=config["seed"],
        out=PLAN.anat_out_args,
    message:
        "Anatomy sub-{wildcards.subject}: bias correction, brain mask, tissues, template registration"
    shell:
        "python -m echoprep anatomy --t1w {input.t1w:q} --options-json {params.options:q}"
        " --seed {params.seed} --threads {threads} --out {params.out} 2> {log}"
