# GLMsingle single-trial betas per session and preprocessing variant, the session analysis
# masks shared by the variants, the comparison's type-B reference, and noise ceilings.
# Inputs, outputs, params, resources and the rest: PLAN.spec (echoprep.plan.specs).


# One analysis mask per subject and session: brain voxels with valid (finite, non-constant)
# data in every run of every variant fitted there; every glm job of the session uses it.
_spec = PLAN.spec("glm_analysis_mask")


rule glm_analysis_mask:
    input:
        unpack(_spec.input),
    output:
        **_spec.output,
    log:
        _spec.log,
    benchmark:
        _spec.benchmark
    conda:
        "../../envs/echoprep.yaml"
    threads: _spec.threads
    resources:
        **_spec.resources,
    params:
        **_spec.params,
    message:
        "GLM analysis mask {wildcards.ses_prefix}"
    shell:
        "python -m echoprep analysis-mask {params.args} --options-json {params.options:q}"
        " --out mask={output.mask:q} 2> {log:q}"


_spec = PLAN.spec("glm")


rule glm:
    input:
        unpack(_spec.input),
    output:
        **_spec.output,
    log:
        _spec.log,
    benchmark:
        _spec.benchmark
    conda:
        "../../envs/echoprep.yaml"
    threads: _spec.threads
    resources:
        **_spec.resources,
    params:
        **_spec.params,
    message:
        "GLMsingle {wildcards.ses_prefix} ({wildcards.nordic}-{wildcards.combine})"
    shell:
        "python -m echoprep glm --bold {input.bold:q} --events {input.events:q}"
        " {params.session} --options-json {params.options:q} --seed {params.seed}"
        " --threads {params.threads} --out {params.out} 2> {log:q}"


# Type-B single-trial betas (assumed HRF, least squares: no GLMdenoise PCs, no ridge) of the
# comparison's reference variant, on the same analysis mask and trials as its glm job. A job of
# its own (not an extra output of every glm job) keeps the glm jobs' outputs as they were and
# adds one type-B fit per comparison session, for one variant only.
_spec = PLAN.spec("glm_reference")


rule glm_reference:
    input:
        unpack(_spec.input),
    output:
        **_spec.output,
    log:
        _spec.log,
    benchmark:
        _spec.benchmark
    conda:
        "../../envs/echoprep.yaml"
    threads: _spec.threads
    resources:
        **_spec.resources,
    params:
        **_spec.params,
    message:
        "GLM type-B reference {wildcards.ses_prefix} ({wildcards.nordic}-{wildcards.combine})"
    shell:
        "python -m echoprep glm --bold {input.bold:q} --events {input.events:q}"
        " {params.session} --options-json {params.options:q} --seed {params.seed}"
        " --threads {params.threads} --stop-at typeb --out betas_typeb={output.betas_typeb:q}"
        " 2> {log:q}"


_spec = PLAN.spec("noiseceiling_session")


rule noiseceiling_session:
    input:
        **_spec.input,
    output:
        **_spec.output,
    log:
        _spec.log,
    benchmark:
        _spec.benchmark
    conda:
        "../../envs/echoprep.yaml"
    threads: _spec.threads
    resources:
        **_spec.resources,
    params:
        **_spec.params,
    message:
        "Noise ceiling {wildcards.ses_prefix} ({wildcards.nordic}-{wildcards.combine})"
    shell:
        "python -m echoprep noiseceiling session --betas {input.betas:q} --trials {input.trials:q}"
        " --mask {input.mask:q} {params.space} --out nc={output.nc:q} 2> {log:q}"


_spec = PLAN.spec("noiseceiling_subject")


rule noiseceiling_subject:
    input:
        unpack(_spec.input),
    output:
        **_spec.output,
    log:
        _spec.log,
    benchmark:
        _spec.benchmark
    conda:
        "../../envs/echoprep.yaml"
    threads: _spec.threads
    resources:
        **_spec.resources,
    params:
        **_spec.params,
    message:
        "Noise ceiling {wildcards.sub_prefix}, all sessions ({wildcards.nordic}-{wildcards.combine})"
    shell:
        "python -m echoprep noiseceiling subject --betas {input.betas:q} --trials {input.trials:q}"
        " --mask {input.mask:q} --r2 {input.r2:q} {params.space} --out allrep={output.allrep:q}"
        " r2mean={output.r2mean:q} ncsnr={output.ncsnr:q} 2> {log:q}"


_spec = PLAN.spec("noiseceiling_repeats")


rule noiseceiling_repeats:
    input:
        **_spec.input,
    output:
        **_spec.output,
    log:
        _spec.log,
    localrule: True
    conda:
        "../../envs/echoprep.yaml"
    threads: _spec.threads
    resources:
        **_spec.resources,
    params:
        **_spec.params,
    message:
        "Noise ceiling for {wildcards.nrep} repeats {wildcards.sub_prefix} ({wildcards.nordic}-{wildcards.combine})"
    shell:
        "python -m echoprep noiseceiling repeats --ncsnr {input.ncsnr:q} --repeats {wildcards.nrep}"
        " {params.space} --out nc={output.nc:q} 2> {log:q}"
