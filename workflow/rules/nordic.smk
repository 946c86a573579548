# NORDIC thermal-noise denoising, the first step of a run's NORDIC-side chain (one job per run,
# echoprep.plan.chains): NORDIC on every echo (magnitude + phase, or magnitude only; one echo
# after another, the memory of one echo), then, with spatial preprocessing, the one-shot
# resampling of every echo and the echo combinations the chain folds in. Its outputs are per
# echo, so there is one rule per echo count of the dataset (PLAN.echo_counts(): usually one,
# named nordic; nordic_<n>echoes when subjects have different counts, grouped like nordic).


for _echoes in PLAN.echo_counts() if "nordic" in PLAN.chain_sides() else []:

    rule:
        name:
            PLAN.echo_rule("nordic", _echoes)
        input:
            unpack(PLAN.chain_inputs("nordic")),
        output:
            **PLAN.chain_outputs("nordic", _echoes, temp),
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
            PLAN.chain_env("nordic")
        threads: 2
        resources:
            mem_mb=PLAN.mem_mb("nordic"),
            runtime=PLAN.runtime("nordic"),
        params:
            **PLAN.chain_params("nordic"),
        message:
            PLAN.chain_message("nordic", _echoes)
        shell:
            step_shell(PLAN.chain_steps("nordic"))
