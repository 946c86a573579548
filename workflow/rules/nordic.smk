# NORDIC thermal-noise denoising: one job per run for all its echoes (magnitude + phase, or
# magnitude only), one after another in one process (the memory of one echo). Its outputs are
# per echo, so there is one rule per echo count of the dataset (PLAN.echo_counts(): usually one,
# named nordic; nordic_<n>echoes when subjects have different counts, grouped like nordic).


for _echoes in PLAN.echo_counts():

    rule:
        name:
            PLAN.echo_rule("nordic", _echoes)
        input:
            unpack(PLAN.nordic_inputs),
        output:
            **PLAN.nordic_run_outputs(_echoes),
        log:
            PLAN.log("nordic"),
        benchmark:
            PLAN.benchmark("nordic")
        wildcard_constraints:
            **PLAN.echo_constraints(_echoes, SPATIAL_RUN_PREFIX),
        group:
            PLAN.profile_group(
                "nordic", lambda: workflow.group_settings.overwrite_groups
            )
        conda:
            "../../envs/echoprep.yaml"
        threads: 2
        resources:
            mem_mb=PLAN.mem_mb("nordic"),
            runtime=PLAN.runtime("nordic"),
        params:
            args=PLAN.nordic_params,
            out=PLAN.nordic_out_args,
            options=PLAN.options("nordic"),
            seed=config["seed"],
        message:
            f"NORDIC {{wildcards.run_prefix}} ({_echoes} echoes)"
        shell:
            "python -m echoprep nordic --mag {input.mag:q} {params.args}"
            " --options-json {params.options:q} --seed {params.seed} --threads {threads}"
            " --out {params.out} 2> {log}"
