# Anatomy per subject: N4, brain mask, tissue classes, T1w <-> template transforms (anat/).
# Inputs, outputs, params, resources and the rest: PLAN.spec (echoprep.plan.specs).
_spec = PLAN.spec("anatomy")


rule anatomy:
    input:
        unpack(_spec.input),
    output:
        **_spec.output,
    log:
        _spec.log,
    benchmark:
        _spec.benchmark
    conda:
        "../../envs/spatial.yaml"
    threads: _spec.threads
    resources:
        **_spec.resources,
    params:
        **_spec.params,
    message:
        "Anatomy sub-{wildcards.subject}: bias correction, brain mask, tissues, template registration"
    shell:
        "python -m echoprep anatomy --t1w {input.t1w:q} {params.args}"
        " --options-json {params.options:q} --seed {params.seed} --threads {params.threads}"
        " --out {params.out} 2> {log:q}"
