# GLMsingle single-trial betas per session and preprocessing variant, and noise ceilings.


wildcard_constraints:
    combine=r"single|optcom|denoised",
    ses_dir=r"sub-[A-Za-z0-9]+(/ses-[A-Za-z0-9]+)?/func",
    ses_prefix=r"sub-[A-Za-z0-9]+(_ses-[A-Za-z0-9]+)?_task-[A-Za-z0-9]+",
    sub_dir=r"sub-[A-Za-z0-9]+/func",
    sub_prefix=r"sub-[A-Za-z0-9]+_task-[A-Za-z0-9]+",
    nrep=r"[0-9]+",


rule glm_description:
    output:
        OUT / "glmsingle-{nordic}-{combine}" / "dataset_description.json",
    log:
        LOGS / "glmsingle-{nordic}-{combine}" / "dataset_description.log",
    localrule: True
    conda:
        "../../envs/echoprep.yaml"
    params:
        config=config_json(),
        source=Path(config["bids_dir"]).resolve(),
    shell:
        "python -m echoprep describe glm {output} --source {params.source:q}"
        " --config-json {params.config:q} 2> {log}"


rule glm_analysis_description:
    output:
        ANALYSIS / "dataset_description.json",
    log:
        LOGS / glm_mask_stage.ROOT_NAME / "dataset_description.log",
    localrule: True
    conda:
        "../../envs/echoprep.yaml"
    params:
        config=config_json(),
        source=Path(config["bids_dir"]).resolve(),
    shell:
        "python -m echoprep describe analysis-mask {output} --source {params.source:q}"
        " --config-json {params.config:q} 2> {log}"


# One analysis mask per subject and session: brain voxels with valid (finite, non-constant)
# data in every run of every variant fitted there; every glm job of the session uses it.
rule glm_analysis_mask:
    input:
        unpack(analysis_mask_inputs),
    output:
        **analysis_mask_outputs(),
    log:
        LOGS / glm_mask_stage.ROOT_NAME / "{ses_dir}" / "{ses_prefix}_mask.log",
    benchmark:
        BENCH / glm_mask_stage.ROOT_NAME / "{ses_dir}" / "{ses_prefix}_mask.tsv"
    conda:
        "../../envs/echoprep.yaml"
    threads: 1
    resources:
        mem_mb=analysis_mask_mb,
        runtime=lambda wc, attempt: 15 * attempt,
    params:
        args=analysis_mask_params,
        options=glm_options(),
    shell:
        "python -m echoprep analysis-mask {params.args} --options-json {params.options:q}"
        " --out {output.mask} 2> {log}"


rule glm:
    input:
        unpack(glm_inputs),
    output:
        **glm_outputs(),
    log:
        LOGS / "glmsingle-{nordic}-{combine}" / "{ses_dir}" / "{ses_prefix}_glm.log",
    benchmark:
        BENCH / "glmsingle-{nordic}-{combine}" / "{ses_dir}" / "{ses_prefix}_glm.tsv"
    conda:
        "../../envs/echoprep.yaml"
    threads: 2
    resources:
        mem_mb=glm_mb,
        runtime=glm_minutes,
    params:
        session=glm_params,
        options=glm_options(),
        seed=config["seed"],
        out=lambda wc, output: " ".join(
            f"{k}={v}" for k, v in output.items() if not k.endswith("_json")
        ),
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
        unpack(glm_inputs),
    output:
        **reference_outputs(),
    log:
        LOGS / "glmsingle-{nordic}-{combine}" / "{ses_dir}" / "{ses_prefix}_typeb.log",
    benchmark:
        BENCH / "glmsingle-{nordic}-{combine}" / "{ses_dir}" / "{ses_prefix}_typeb.tsv"
    conda:
        "../../envs/echoprep.yaml"
    threads: 2
    resources:
        mem_mb=glm_mb,
        runtime=glm_minutes,
    params:
        session=glm_params,
        options=reference_glm_options,
        seed=config["seed"],
    shell:
        "python -m echoprep glm --bold {input.bold} --events {input.events}"
        " {params.session} --options-json {params.options:q} --seed {params.seed}"
        " --threads {threads} --stop-at typeb --out betas_typeb={output.betas_typeb}"
        " 2> {log}"


rule noiseceiling_session:
    input:
        betas=glm_outputs()["betas"],
        trials=glm_outputs()["trials"],
        mask=glm_outputs()["mask"],
    output:
        **nc_session_outputs(),
    log:
        LOGS
        / "glmsingle-{nordic}-{combine}"
        / "{ses_dir}"
        / "{ses_prefix}_noiseceiling.log",
    benchmark:
        BENCH
        / "glmsingle-{nordic}-{combine}"
        / "{ses_dir}"
        / "{ses_prefix}_noiseceiling.tsv"
    conda:
        "../../envs/echoprep.yaml"
    threads: 1
    resources:
        mem_mb=nc_session_mb,
        runtime=lambda wc, attempt: 15 * attempt,
    params:
        space=lambda wc: f"--space {glm_space()}" if glm_space() else "",
    shell:
        "python -m echoprep noiseceiling session --betas {input.betas} --trials {input.trials}"
        " --mask {input.mask} {params.space} --out nc={output.nc} 2> {log}"


rule noiseceiling_subject:
    input:
        unpack(nc_subject_inputs),
    output:
        **nc_subject_outputs(),
    log:
        LOGS
        / "glmsingle-{nordic}-{combine}"
        / "{sub_dir}"
        / "{sub_prefix}_noiseceiling.log",
    benchmark:
        BENCH
        / "glmsingle-{nordic}-{combine}"
        / "{sub_dir}"
        / "{sub_prefix}_noiseceiling.tsv"
    conda:
        "../../envs/echoprep.yaml"
    threads: 1
    resources:
        mem_mb=nc_subject_mb,
        runtime=lambda wc, attempt: 30 * attempt,
    params:
        space=lambda wc: f"--space {glm_space()}" if glm_space() else "",
    shell:
        "python -m echoprep noiseceiling subject --betas {input.betas} --trials {input.trials}"
        " --mask {input.mask} --r2 {input.r2} {params.space} --out allrep={output.allrep}"
        " r2mean={output.r2mean} ncsnr={output.ncsnr} 2> {log}"


rule noiseceiling_repeats:
    input:
        ncsnr=nc_subject_outputs()["ncsnr"],
    output:
        **nc_repeats_output(),
    log:
        LOGS
        / "glmsingle-{nordic}-{combine}"
        / "{sub_dir}"
        / "{sub_prefix}_nc{nrep}rep.log",
    localrule: True
    conda:
        "../../envs/echoprep.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 2000 * attempt,
        runtime=lambda wc, attempt: 5 * attempt,
    params:
        space=lambda wc: f"--space {glm_space()}" if glm_space() else "",
    shell:
        "python -m echoprep noiseceiling repeats --ncsnr {input.ncsnr} --repeats {wildcards.nrep}"
        " {params.space} --out nc={output.nc} 2> {log}"
