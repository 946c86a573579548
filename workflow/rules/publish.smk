# The LAION-fMRI loader's layout (publish.laion): the variant publish.variant again under the
# names laion_fmri reads, in glmsingle-tedana/ and atlases/ (echoprep.stages.publish). Every
# file but the meanR2gt15mask is a relative symbolic link to (or a copy of, publish.method) its
# original; one job per session, per subject, per subject and repeat count, per subject and ROI.


rule publish_session:
    input:
        unpack(PLAN.publish_session_inputs),
    output:
        **PLAN.publish_session_outputs(),
    log:
        PLAN.log("publish_session"),
    localrule: True
    conda:
        "../../envs/echoprep.yaml"
    threads: 1
    resources:
        mem_mb=PLAN.mem_mb("publish_session"),
        runtime=PLAN.runtime("publish_session"),
    params:
        args=PLAN.publish_args,
        options=PLAN.options("publish"),
    message:
        "Publish LAION layout {wildcards.ses_prefix}"
    shell:
        "python -m echoprep publish {params.args} --options-json {params.options:q} 2> {log}"


rule publish_subject:
    input:
        unpack(PLAN.publish_subject_inputs),
    output:
        **PLAN.publish_subject_outputs(),
    log:
        PLAN.log("publish_subject"),
    localrule: True
    conda:
        "../../envs/echoprep.yaml"
    threads: 1
    resources:
        mem_mb=PLAN.mem_mb("publish_subject"),
        runtime=PLAN.runtime("publish_subject"),
    params:
        args=PLAN.publish_args,
        options=PLAN.options("publish"),
    message:
        "Publish LAION layout sub-{wildcards.subject}: meanR2gt15mask, noise ceiling"
    shell:
        "python -m echoprep publish {params.args} --options-json {params.options:q} 2> {log}"


rule publish_repeats:
    input:
        unpack(PLAN.publish_repeats_inputs),
    output:
        **PLAN.publish_repeats_output(),
    log:
        PLAN.log("publish_repeats"),
    localrule: True
    conda:
        "../../envs/echoprep.yaml"
    threads: 1
    resources:
        mem_mb=PLAN.mem_mb("publish_repeats"),
        runtime=PLAN.runtime("publish_repeats"),
    params:
        args=PLAN.publish_args,
        options=PLAN.options("publish"),
    message:
        "Publish LAION layout sub-{wildcards.subject}: {wildcards.nrep}-repeat noise ceiling"
    shell:
        "python -m echoprep publish {params.args} --options-json {params.options:q} 2> {log}"


rule publish_roi:
    input:
        unpack(PLAN.publish_roi_inputs),
    output:
        **PLAN.publish_roi_output(),
    log:
        PLAN.log("publish_roi"),
    wildcard_constraints:
        laion_roi=r"[A-Za-z0-9]+",
    localrule: True
    conda:
        "../../envs/echoprep.yaml"
    threads: 1
    resources:
        mem_mb=PLAN.mem_mb("publish_roi"),
        runtime=PLAN.runtime("publish_roi"),
    params:
        args=PLAN.publish_args,
        options=PLAN.options("publish"),
    message:
        "Publish LAION layout sub-{wildcards.subject}: ROI {wildcards.laion_roi}"
    shell:
        "python -m echoprep publish {params.args} --options-json {params.options:q} 2> {log}"
