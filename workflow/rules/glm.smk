# GLMsingle single-trial betas per session and preprocessing variant, the session analysis
# masks shared by the variants, the comparison's type-B reference, and noise ceilings.


# One analysis mask per subject and session: brain voxels with valid (finite, non-constant)
# data in every run of every variant fitted there; every glm job of the session uses it.
rule glm_analysis_mask:
    input:
        unpack(PLAN.analysis_mask_inputs),
    output:
        **PLAN.analysis_mask_outputs(),
    log:
        PLAN.log("glm_analysis_mask"),
    benchmark:
        PLAN.benchmark("glm_analysis_mask")
    conda:
        "../../envs/echoprep.yaml"
    threads: 1
    resources:
        mem_mb=PLAN.mem_mb("glm_analysis_mask"),
        runtime=PLAN.runtime("glm_analysis_mask"),
    params:
        args=PLAN.analysis_mask_params,
        options=PLAN.options("glm"),
    message:
        "GLM analysis mask {wildcards.ses_prefix}"
    shell:
        "python -m echoprep analysis-mask {params.args} --options-json {params.options:q}"
        " --out mask={output.mask} 2> {log}"


rule glm:
    input:
        unpack(PLAN.glm_inputs),
    output:
        **PLAN.glm_outputs(),
    log:
        PLAN.log("glm"),
    benchmark:
        PLAN.benchmark("glm")
    conda:
        "../../envs/echoprep.yaml"
    threads: 2
    resources:
        mem_mb=PLAN.mem_mb("glm"),
        runtime=PLAN.runtime("glm"),
    params:
        session=PLAN.glm_params,
        options=PLAN.options("glm"),
        seed=config["seed"],
        out=PLAN.glm_out_args,
    message:
        "GLMsingle {wildcards.ses_prefix} ({wildcards.nordic}-{wildcards.combine})"
    shell:
        "python -m echoprep glm --bold {input.bold} --events {input.events}"
        " {params.session} --options-json {params.options:q} --seed {params.seed}"
        " --threads {threads} --out {params.out} 2> {log}"


# Type-B single-trial betas (assumed HRF, least squares: no GLMdenoise PCs, no ridge) of the
# comparison's reference variant, on the same analysis mask and trials as its glm job. A job of
# its own (not an extra output of every glm job) keeps the glm jobs' outputs as they were and
# adds one type-B fit per comparison session, for one variant only.
rule glm_reference:
    input:
        unpack(PLAN.glm_inputs),
    output:
        **PLAN.reference_outputs(),
    log:
        PLAN.log("glm_reference"),
    benchmark:
        PLAN.benchmark("glm_reference")
    conda:
        "../../envs/echoprep.yaml"
    threads: 2
    resources:
        mem_mb=PLAN.mem_mb("glm_reference"),
        runtime=PLAN.runtime("glm_reference"),
    params:
        session=PLAN.glm_params,
        options=PLAN.reference_glm_options,
        seed=config["seed"],
    message:
        "GLM type-B reference {wildcards.ses_prefix} ({wildcards.nordic}-{wildcards.combine})"
    shell:
        "python -m echoprep glm --bold {input.bold} --events {input.events}"
        " {params.session} --options-json {params.options:q} --seed {params.seed}"
        " --threads {threads} --stop-at typeb --out betas_typeb={output.betas_typeb}"
        " 2> {log}"


rule noiseceiling_session:
    input:
        betas=PLAN.glm_outputs()["betas"],
        trials=PLAN.glm_outputs()["trials"],
        mask=PLAN.glm_outputs()["mask"],
    output:
        **PLAN.nc_session_outputs(),
    log:
        PLAN.log("noiseceiling_session"),
    benchmark:
        PLAN.benchmark("noiseceiling_session")
    conda:
        "../../envs/echoprep.yaml"
    threads: 1
    resources:
        mem_mb=PLAN.mem_mb("noiseceiling_session"),
        runtime=PLAN.runtime("noiseceiling_session"),
    params:
        space=PLAN.space_args,
    message:
        "Noise ceiling {wildcards.ses_prefix} ({wildcards.nordic}-{wildcards.combine})"
    shell:
        "python -m echoprep noiseceiling session --betas {input.betas} --trials {input.trials}"
        " --mask {input.mask} {params.space} --out nc={output.nc} 2> {log}"


rule noiseceiling_subject:
    input:
        unpack(PLAN.nc_subject_inputs),
    output:
        **PLAN.nc_subject_outputs(),
    log:
        PLAN.log("noiseceiling_subject"),
    benchmark:
        PLAN.benchmark("noiseceiling_subject")
    conda:
        "../../envs/echoprep.yaml"
    threads: 1
    resources:
        mem_mb=PLAN.mem_mb("noiseceiling_subject"),
        runtime=PLAN.runtime("noiseceiling_subject"),
    params:
        space=PLAN.space_args,
    message:
        "Noise ceiling {wildcards.sub_prefix}, all sessions ({wildcards.nordic}-{wildcards.combine})"
    shell:
        "python -m echoprep noiseceiling subject --betas {input.betas} --trials {input.trials}"
        " --mask {input.mask} --r2 {input.r2} {params.space} --out allrep={output.allrep}"
        " r2mean={output.r2mean} ncsnr={output.ncsnr} 2> {log}"


rule noiseceiling_repeats:
    input:
        ncsnr=PLAN.nc_subject_outputs()["ncsnr"],
    output:
        **PLAN.nc_repeats_output(),
    log:
        PLAN.log("noiseceiling_repeats"),
    localrule: True
    conda:
        "../../envs/echoprep.yaml"
    threads: 1
    resources:
        mem_mb=PLAN.mem_mb("noiseceiling_repeats"),
        runtime=PLAN.runtime("noiseceiling_repeats"),
    params:
        space=PLAN.space_args,
    message:
        "Noise ceiling for {wildcards.nrep} repeats {wildcards.sub_prefix} ({wildcards.nordic}-{wildcards.combine})"
    shell:
        "python -m echoprep noiseceiling repeats --ncsnr {input.ncsnr} --repeats {wildcards.nrep}"
        " {params.space} --out nc={output.nc} 2> {log}"
