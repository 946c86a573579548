# NORDIC thermal-noise denoising, the first step of a run's NORDIC-side chain (one job per run,
# echoprep.plan.chains): NORDIC on every echo (magnitude + phase, or magnitude only; one echo
# after another, the memory of one echo), then, with spatial preprocessing, the one-shot
# resampling of every echo and the echo combinations the chain folds in. Its outputs are per
# echo, so there is one rule per echo count of the dataset (PLAN.echo_counts(): usually one,
# named nordic; nordic_<n>echoes when subjects have different counts, grouped like nordic).
# Inputs, outputs, params, resources and the rest: PLAN.spec (echoprep.plan.specs).


for _echoes in PLAN.echo_counts() if "nordic" in PLAN.chain_sides() else []:
    _spec = PLAN.spec("nordic", _echoes)

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
            step_shell(PLAN.chain_steps("nordic"))
