# Spatial preprocessing: the subject's reference boldref, geometry per run (raw reference echo;
# the first step of a per-run chain, PLAN.spatial_host, else its own job), the functional grid
# per subject, one interpolation of every echo of both NORDIC variants (spatial/,
# preproc-<nordic>/; the NORDIC side's in its nordic job). Inputs, outputs, params, resources
# and the rest: PLAN.spec (echoprep.plan.specs).

from echoprep.io.confounds import copy_confounds as _copy_confounds

# The subject's reference run's geometry, written as the subject's reference boldref: the
# target every run's geometry (the reference run's own too) and the functional grid align to.
_spec = PLAN.spec("spatial_reference")


rule spatial_reference:
    input:
        unpack(_spec.input),
    output:
        **_spec.output,
    log:
        _spec.log,
    benchmark:
        _spec.benchmark
    group:
        _spec.group
    conda:
        "../../envs/spatial.yaml"
    threads: _spec.threads
    resources:
        **_spec.resources,
    params:
        **_spec.params,
    message:
        "Reference boldref sub-{wildcards.subject} (head motion and distortion of its first run)"
    shell:
        "python -m echoprep spatial run --echo {input.echo:q} {params.args}"
        " --options-json {params.options:q} --threads {params.threads}"
        " --out boldref={output.boldref:q} 2> {log:q}"


# A run's geometry as a job of its own, only when no per-run chain runs it as its first step
# (PLAN.spatial_host: the NORDIC chain with the default config).
if PLAN.spatial_host is None:
    _spec = PLAN.spec("spatial_run")

    rule spatial_run:
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
        group:
            _spec.group
        conda:
            "../../envs/spatial.yaml"
        threads: _spec.threads
        resources:
            **_spec.resources,
        params:
            **_spec.params,
        message:
            "Head motion and distortion {wildcards.run_prefix}"
        shell:
            step_shell(["spatial_run"])


_spec = PLAN.spec("spatial_subject")


rule spatial_subject:
    input:
        unpack(_spec.input),
    output:
        **_spec.output,
    log:
        _spec.log,
    benchmark:
        _spec.benchmark
    conda:
        "../../envs/spatial.yaml"
    threads: _spec.threads
    resources:
        **_spec.resources,
    params:
        **_spec.params,
    message:
        "Functional grid sub-{wildcards.subject} (boldref to T1w)"
    shell:
        "python -m echoprep spatial subject --boldref {input.boldref:q} --t1w {input.t1w:q}"
        " --mask {input.mask:q} {params.args} --options-json {params.options:q} --seed {params.seed}"
        " --threads {params.threads} --out boldref={output.boldref:q}"
        " brain_mask={output.brain_mask:q} xfm={output.xfm:q} 2> {log:q}"


# The raw side's per-run chain (one job per run, echoprep.plan.chains): every echo of the raw
# data resampled once, one after another (the memory of one echo; the transform chain built
# once), then the echo combinations the chain folds in. The NORDIC side's resampling is a step
# of its nordic job (nordic.smk). Outputs are per echo: one rule per echo count of the
# dataset, as for nordic.
for _echoes in PLAN.echo_counts() if "raw" in PLAN.chain_sides() else []:
    _spec = PLAN.spec("spatial_resample", _echoes)

    rule:
        name:
            _spec.name
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
        group:
            _spec.group
        conda:
            _spec.conda
        threads: _spec.threads
        resources:
            **_spec.resources,
        params:
            **_spec.params,
        message:
            _spec.message
        shell:
            step_shell(PLAN.chain_steps("raw"))


# The run's confounds again beside its series of each NORDIC variant (combine-<nordic>/, and
# preproc-<nordic>/ with spatial.keep_echoes), where nilearn's load_confounds and
# first_level_from_bids look for them: copies of spatial/'s table with a sidecar naming it
# (echoprep.io.confounds), written inside the Snakemake process (no job to submit).
_spec = PLAN.spec("confounds")


rule confounds:
    input:
        **_spec.input,
    output:
        **_spec.output,
    log:
        _spec.log,
    wildcard_constraints:
        **_spec.wildcard_constraints,
    localrule: True
    message:
        "Confounds beside the series {wildcards.run_prefix} ({wildcards.nordic})"
    run:
        _copy_confounds(input.confounds, dict(output.items()), log[0])
