# GLMsingle single-trial betas per session and preprocessing variant, the session analysis
# masks shared by the variants, the visual ROI's type-B betas, the comparison's held-out fits
# and noise ceilings.
# Inputs, outputs, params, resources and the rest: PLAN.spec (echoprep.plan.specs).

from echoprep.preflight import glm_env

# The rules that fit (glm, glm_reference, glm_heldout) run in the conda env of glm.engine:
# envs/echoprep.yaml, or envs/glmsingle.yaml (the same plus upstream GLMsingle, pinned); with
# glm.device: cuda, envs/gpu.yaml (torch), and their specs ask for one GPU (gpu=1).
GLM_CONDA_ENV = str(glm_env(config))


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
        GLM_CONDA_ENV
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


# Type-B single-trial betas (library HRF, least squares: no GLMdenoise PCs, no ridge) of the
# visual ROI's source variant, on the same analysis mask and trials as its glm job: the ROI's
# run-level test needs least-squares betas. A job of its own (not an extra output of every glm
# job) adds one type-B fit per subject, for one variant only.
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
        GLM_CONDA_ENV
    threads: _spec.threads
    resources:
        **_spec.resources,
    params:
        **_spec.params,
    message:
        "GLM type-B betas {wildcards.ses_prefix} ({wildcards.nordic}-{wildcards.combine})"
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


# The comparison's held-out fits: GLMsingle on each half of the session's runs apart, for every
# balanced split of comparison.splits (every hyperparameter chosen inside the half), written as
# image means. One job per comparison session and variant.
_spec = PLAN.spec("glm_heldout")


rule glm_heldout:
    input:
        unpack(_spec.input),
    output:
        **_spec.output,
    log:
        _spec.log,
    benchmark:
        _spec.benchmark
    conda:
        GLM_CONDA_ENV
    threads: _spec.threads
    resources:
        **_spec.resources,
    params:
        **_spec.params,
    message:
        "GLMsingle held-out fits {wildcards.ses_prefix} ({wildcards.nordic}-{wildcards.combine})"
    shell:
        "python -m echoprep glm-heldout --bold {input.bold:q} --events {input.events:q}"
        " {params.session} --options-json {params.options:q} --seed {params.seed}"
        " --threads {params.threads} --out means={output.means:q} volumes={output.volumes:q}"
        " 2> {log:q}"
