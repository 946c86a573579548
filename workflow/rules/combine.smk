# Echo handling per run: single-echo baseline, tedana optimal combination, tedana ICA denoising.


# The single echo and the optimal combination of the NORDIC sides that do not fold them into
# their per-run chain (echoprep.plan.chains: in the default config, only the NORDIC side's
# single echo of the comparison sessions has a job of its own).
if PLAN.separate_combine_sides("single"):

    rule single_echo:
        input:
            echoes=PLAN.echo_inputs,
        output:
            **PLAN.combine_step_outputs("single"),
        log:
            PLAN.log("single_echo"),
        benchmark:
            PLAN.benchmark("single_echo")
        wildcard_constraints:
            nordic="|".join(PLAN.separate_combine_sides("single")),
        conda:
            "../../envs/echoprep.yaml"
        threads: 1
        resources:
            mem_mb=PLAN.mem_mb("single_echo"),
            runtime=PLAN.runtime("single_echo"),
        params:
            **PLAN.combine_rule_params("single"),
        message:
            "Single echo {wildcards.run_prefix} ({wildcards.nordic})"
        shell:
            step_shell(["single_echo"])


if PLAN.separate_combine_sides("optcom"):

    rule optcom:
        input:
            echoes=PLAN.echo_inputs,
        output:
            **PLAN.combine_step_outputs("optcom"),
        log:
            PLAN.log("optcom"),
        benchmark:
            PLAN.benchmark("optcom")
        wildcard_constraints:
            nordic="|".join(PLAN.separate_combine_sides("optcom")),
        conda:
            "../../envs/tedana.yaml"
        threads: 1
        resources:
            mem_mb=PLAN.mem_mb("optcom"),
            runtime=PLAN.runtime("optcom"),
        params:
            **PLAN.combine_rule_params("optcom"),
        message:
            "Optimal combination {wildcards.run_prefix} ({wildcards.nordic})"
        shell:
            step_shell(["optcom"])


# ICA denoising. NORDIC-on runs have their own rule: their component count comes from the
# NORDIC-off run's ICA (tedana.nordic_tedpca: raw_run), and Snakemake's --until cannot follow a
# rule whose jobs depend on jobs of the same rule.
rule tedana:
    input:
        unpack(PLAN.tedana_inputs),
    output:
        **PLAN.combine_outputs("denoised"),
    log:
        PLAN.log("tedana"),
    benchmark:
        PLAN.benchmark("tedana")
    wildcard_constraints:
        nordic="raw",
    conda:
        "../../envs/tedana.yaml"
    threads: 2
    resources:
        mem_mb=PLAN.mem_mb("tedana"),
        runtime=PLAN.runtime("tedana"),
    params:
        args=PLAN.combine_params,
        options=PLAN.tedana_options,
        nordic=PLAN.tedana_params,
        seed=config["seed"],
        work=lambda wc: WORK / "tmp" / f"combine-{wc.nordic}",
    message:
        "tedana ICA denoising {wildcards.run_prefix} ({wildcards.nordic})"
    shell:
        "python -m echoprep combine denoised --echo {input.echoes} {params.args}"
        " --options-json {params.options:q} {params.nordic} --seed {params.seed}"
        " --work-dir {params.work} --threads {threads}"
        " --out bold={output.bold} metrics={output.metrics} mixing={output.mixing} 2> {log}"


use rule tedana as tedana_nordic with:
    wildcard_constraints:
        nordic="nordic",
