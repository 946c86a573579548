# The LAION-fMRI loader's layout (publish.laion): the variant publish.variant again under the
# names laion_fmri reads, in glmsingle-tedana/ and atlases/ (echoprep.stages.publish). Every
# file but the meanR2gt15mask is a relative symbolic link to (or a copy of, publish.method) its
# original; one job per session, per subject, per subject and repeat count, per subject and ROI.
# Inputs, outputs, params, resources and the rest: PLAN.spec (echoprep.plan.specs).


_spec = PLAN.spec("publish_session")


rule publish_session:
    input:
        unpack(_spec.input),
    output:
        **_spec.output,
    log:
        _spec.log,
    localrule: True
    conda:
        "../../envs/echoprep.yaml"
    threads: _spec.threads
    resources:
        **_spec.resources,
    params:
        **_spec.params,
    message:
        "Publish LAION layout {wildcards.ses_prefix}"
    shell:
        "python -m echoprep publish {params.args} --options-json {params.options:q} 2> {log:q}"


_spec = PLAN.spec("publish_subject")


rule publish_subject:
    input:
        unpack(_spec.input),
    output:
        **_spec.output,
    log:
        _spec.log,
    localrule: True
    conda:
        "../../envs/echoprep.yaml"
    threads: _spec.threads
    resources:
        **_spec.resources,
    params:
        **_spec.params,
    message:
        "Publish LAION layout sub-{wildcards.subject}: meanR2gt15mask, noise ceiling"
    shell:
        "python -m echoprep publish {params.args} --options-json {params.options:q} 2> {log:q}"


_spec = PLAN.spec("publish_repeats")


rule publish_repeats:
    input:
        unpack(_spec.input),
    output:
        **_spec.output,
    log:
        _spec.log,
    localrule: True
    conda:
        "../../envs/echoprep.yaml"
    threads: _spec.threads
    resources:
        **_spec.resources,
    params:
        **_spec.params,
    message:
        "Publish LAION layout sub-{wildcards.subject}: {wildcards.nrep}-repeat noise ceiling"
    shell:
        "python -m echoprep publish {params.args} --options-json {params.options:q} 2> {log:q}"


_spec = PLAN.spec("publish_roi")


rule publish_roi:
    input:
        unpack(_spec.input),
    output:
        **_spec.output,
    log:
        _spec.log,
    wildcard_constraints:
        **_spec.wildcard_constraints,
    localrule: True
    conda:
        "../../envs/echoprep.yaml"
    threads: _spec.threads
    resources:
        **_spec.resources,
    params:
        **_spec.params,
    message:
        "Publish LAION layout sub-{wildcards.subject}: ROI {wildcards.laion_roi}"
    shell:
        "python -m echoprep publish {params.args} --options-json {params.options:q} 2> {log:q}"
