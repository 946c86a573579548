# Echo handling per run: single-echo baseline, tedana optimal combination, tedana ICA denoising.
# Inputs, outputs, params, resources and the rest: PLAN.spec (echoprep.plan.specs).


# The single echo and the optimal combination of the NORDIC sides that do not fold them into
# their per-run chain (echoprep.plan.chains: in the default config, only the NORDIC side's
# single echo of the comparison sessions has a job of its own).
if PLAN.separate_combine_sides("single"):
    _spec = PLAN.spec("single_echo")

    rule single_echo:
        input:
            **_spec.input,
        output:
            **_spec.output,
        log:
            _spec.log,
        benchmark:
            _spec.benchmark
        wildcard_constraints:
            **_spec.wildcard_constraints,
        conda:
            "../../envs/echoprep.yaml"
        threads: _spec.threads
        resources:
            **_spec.resources,
        params:
            **_spec.params,
        message:
            "Single echo {wildcards.run_prefix} ({wildcards.nordic})"
        shell:
            step_shell(["single_echo"])


if PLAN.separate_combine_sides("optcom"):
    _spec = PLAN.spec("optcom")

    rule optcom:
        input:
            **_spec.input,
        output:
            **_spec.output,
        log:
            _spec.log,
        benchmark:
            _spec.benchmark
        wildcard_constraints:
            **_spec.wildcard_constraints,
        conda:
            "../../envs/tedana.yaml"
        threads: _spec.threads
        resources:
            **_spec.resources,
        params:
            **_spec.params,
        message:
            "Optimal combination {wildcards.run_prefix} ({wildcards.nordic})"
        shell:
            step_shell(["optcom"])


# ICA denoising. NORDIC-on runs have their own rule: their component count comes from the
# NORDIC-off run's ICA (tedana.nordic_tedpca: raw_run), and Snakemake's --until cannot follow a
# rule whose jobs depend on jobs of the same rule.
_spec = PLAN.spec("tedana")


rule tedana:
    input:
        unpack(_spec.input),
    output:
        **_spec.output,
    log:
        _spec.log,
    benchmark:
        _spec.benchmark
    wildcard_constraints:
        **_spec.wildcard_constraints,
    conda:
        "../../envs/tedana.yaml"
    threads: _spec.threads
    resources:
        **_spec.resources,
    params:
        **_spec.params,
    message:
        "tedana ICA denoising {wildcards.run_prefix} ({wildcards.nordic})"
    shell:
        "python -m echoprep combine denoised --echo {input.echoes:q} {params.args}"
        " --options-json {params.options:q} {params.nordic} --seed {params.seed}"
        " --work-dir {params.work:q} --threads {params.threads}"
        " --out bold={output.bold:q} metrics={output.metrics:q} mixing={output.mixing:q}"
        " rejected={output.rejected:q} 2> {log:q}"


use rule tedana as tedana_nordic with:
    wildcard_constraints:
        nordic="nordic",
