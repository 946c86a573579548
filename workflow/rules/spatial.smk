# Spatial preprocessing: geometry per run (raw reference echo), the functional grid per subject,
# one interpolation of every echo of both NORDIC variants (spatial/, preproc-<nordic>/).


rule spatial_run:
    input:
        unpack(PLAN.spatial_run_inputs),
    output:
        **PLAN.spatial_run_outputs(),
    log:
        PLAN.log("spatial_run"),
    benchmark:
        PLAN.benchmark("spatial_run")
    wildcard_constraints:
        run_prefix=SPATIAL_RUN_PREFIX,
    # (a cluster profile's groups: the reference run with spatial_subject, the other runs with
    # their resampling; never one group for all runs, which depend on the reference run)
    group:
        PLAN.spatial_run_group(lambda: workflow.group_settings.overwrite_groups)
    conda:
        "../../envs/spatial.yaml"
    threads: 2
    resources:
        mem_mb=PLAN.mem_mb("spatial_run"),
        runtime=PLAN.runtime("spatial_run"),
    params:
        args=PLAN.spatial_run_params,
        options=PLAN.options("spatial"),
    message:
        "Head motion and distortion {wildcards.run_prefix}"
    shell:
        "python -m echoprep spatial run --echo {input.echo:q} {params.args}"
        " --options-json {params.options:q} --threads {threads}"
        " --out confounds={output.confounds:q} boldref={output.boldref:q} xfm={output.xfm:q}"
        " 2> {log}"


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


# One job per run and NORDIC variant for all its echoes, one after another (the memory of one
# echo; the transform chain built once). Outputs are per echo: one rule per echo count of the
# dataset, as for nordic (nordic.smk).
for _echoes in PLAN.echo_counts():

    rule:
        name:
            PLAN.echo_rule("spatial_resample", _echoes)
        input:
            unpack(PLAN.spatial_resample_inputs),
        output:
            **temporary_unless(
                config["spatial"]["keep_echoes"], PLAN.preproc_run_outputs(_echoes)
            ),
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
            "../../envs/spatial.yaml"
        threads: 2
        resources:
            mem_mb=PLAN.mem_mb("spatial_resample"),
            runtime=PLAN.runtime("spatial_resample"),
        params:
            args=PLAN.spatial_resample_params,
            out=PLAN.spatial_resample_out_args,
            options=PLAN.options("spatial"),
        message:
            f"Resample {{wildcards.run_prefix}} ({_echoes} echoes, {{wildcards.nordic}})"
        shell:
            "python -m echoprep spatial resample --echo {input.echo:q}"
            " --geometry {input.geometry:q} --grid {input.grid:q} {params.args}"
            " --options-json {params.options:q} --threads {threads} --out {params.out}"
            " 2> {log}"
