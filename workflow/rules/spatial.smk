# Spatial preprocessing: the subject's reference boldref, geometry per run (raw reference echo;
# the first step of a per-run chain, PLAN.spatial_host, else its own job), the functional grid
# per subject, one interpolation of every echo of both NORDIC variants (spatial/,
# preproc-<nordic>/; the NORDIC side's in its nordic job).


# The subject's reference run's geometry, written as the subject's reference boldref: the
# target every run's geometry (the reference run's own too) and the functional grid align to.
rule spatial_reference:
    input:
        unpack(PLAN.spatial_reference_inputs),
    output:
        **PLAN.spatial_reference_outputs(),
    log:
        PLAN.log("spatial_reference"),
    benchmark:
        PLAN.benchmark("spatial_reference")
    group:
        PLAN.profile_group(
            "spatial_reference", lambda: workflow.group_settings.overwrite_groups
        )
    conda:
        "../../envs/spatial.yaml"
    threads: 2
    resources:
        mem_mb=PLAN.mem_mb("spatial_reference"),
        runtime=PLAN.runtime("spatial_reference"),
    params:
        args=PLAN.spatial_reference_params,
        options=PLAN.options("spatial"),
    message:
        "Reference boldref sub-{wildcards.subject} (head motion and distortion of its first run)"
    shell:
        "python -m echoprep spatial run --echo {input.echo:q} {params.args}"
        " --options-json {params.options:q} --threads {threads}"
        " --out boldref={output.boldref:q} 2> {log}"


# A run's geometry as a job of its own, only when no per-run chain runs it as its first step
# (PLAN.spatial_host: the NORDIC chain with the default config).
if PLAN.spatial_host is None:

    rule spatial_run:
        input:
            unpack(PLAN.geometry_step_inputs),
        output:
            **PLAN.geometry_step_outputs(),
        log:
            PLAN.log("spatial_run"),
        benchmark:
            PLAN.benchmark("spatial_run")
        wildcard_constraints:
            run_prefix=SPATIAL_RUN_PREFIX,
        group:
            PLAN.spatial_run_group(lambda: workflow.group_settings.overwrite_groups)
        conda:
            "../../envs/spatial.yaml"
        threads: 2
        resources:
            mem_mb=PLAN.mem_mb("spatial_run"),
            runtime=PLAN.runtime("spatial_run"),
        params:
            **PLAN.geometry_step_params(),
        message:
            "Head motion and distortion {wildcards.run_prefix}"
        shell:
            step_shell(["spatial_run"])


rule spatial_subject:
    input:
        unpack(PLAN.spatial_subject_inputs),
    output:
        **PLAN.spatial_subject_outputs(),
    log:
        PLAN.log("spatial_subject"),
    benchmark:
        PLAN.benchmark("spatial_subject")
    conda:
        "../../envs/spatial.yaml"
    threads: 1
    resources:
        mem_mb=PLAN.mem_mb("spatial_subject"),
        runtime=PLAN.runtime("spatial_subject"),
    params:
        options=PLAN.options("spatial"),
        seed=config["seed"],
    message:
        "Functional grid sub-{wildcards.subject} (boldref to T1w)"
    shell:
        "python -m echoprep spatial subject --boldref {input.boldref:q} --t1w {input.t1w:q}"
        " --mask {input.mask:q} --options-json {params.options:q} --seed {params.seed}"
        " --threads {threads} --out boldref={output.boldref:q}"
        " brain_mask={output.brain_mask:q} xfm={output.xfm:q} 2> {log}"


# The raw side's per-run chain (one job per run, echoprep.plan.chains): every echo of the raw
# data resampled once, one after another (the memory of one echo; the transform chain built
# once), then the echo combinations the chain folds in. The NORDIC side's resampling is a step
# of its nordic job (nordic.smk). Outputs are per echo: one rule per echo count of the
# dataset, as for nordic.
for _echoes in PLAN.echo_counts() if "raw" in PLAN.chain_sides() else []:

    rule:
        name:
            PLAN.echo_rule("spatial_resample", _echoes)
        input:
            unpack(PLAN.chain_inputs("raw")),
        output:
            **PLAN.chain_outputs("raw", _echoes, temp),
        log:
            PLAN.log("spatial_resample"),
        benchmark:
            PLAN.benchmark("spatial_resample")
        wildcard_constraints:
            **PLAN.echo_constraints(_echoes, SPATIAL_RUN_PREFIX),
        group:
            PLAN.profile_group(
                "spatial_resample", lambda: workflow.group_settings.overwrite_groups
            )
        conda:
            PLAN.chain_env("raw")
        threads: 2
        resources:
            mem_mb=PLAN.mem_mb("spatial_resample"),
            runtime=PLAN.runtime("spatial_resample"),
        params:
            **PLAN.chain_params("raw"),
        message:
            PLAN.chain_message("raw", _echoes)
        shell:
            step_shell(PLAN.chain_steps("raw"))
