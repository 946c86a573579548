# ROI masks on each subject's functional grid (user masks, the visually responsive ROI) and the
# ROI table of every session and variant (echoprep.stages.rois). Inputs, outputs, params,
# resources and the rest: PLAN.spec (echoprep.plan.specs).


_spec = PLAN.spec("roi_visual")


rule roi_visual:
    input:
        unpack(_spec.input),
    output:
        **_spec.output,
    log:
        _spec.log,
    benchmark:
        _spec.benchmark
    conda:
        "../../envs/echoprep.yaml"
    threads: _spec.threads
    resources:
        **_spec.resources,
    params:
        **_spec.params,
    message:
        "Visual ROI sub-{wildcards.subject} res-{wildcards.roi_res}"
    shell:
        "python -m echoprep rois visual --betas {input.betas:q} --trials {input.trials:q}"
        " --summary {input.summary:q} --onoff-r2 {input.onoff_r2:q} --brain-mask {input.mask:q}"
        " --analysis-mask {input.analysis:q} --options-json {params.options:q}"
        " --variant {params.variant:q} --out mask={output.mask:q} 2> {log:q}"


_spec = PLAN.spec("roi_mask")


rule roi_mask:
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
        "../../envs/spatial.yaml"
    threads: _spec.threads
    resources:
        **_spec.resources,
    params:
        **_spec.params,
    message:
        "ROI {wildcards.roi_category}/{wildcards.roi_label} sub-{wildcards.subject} res-{wildcards.roi_res}"
    shell:
        "python -m echoprep rois mask --mask {input.mask:q} --reference {input.reference:q}"
        " {params.args} --out mask={output.mask:q} 2> {log:q}"


_spec = PLAN.spec("roi_table")


rule roi_table:
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
        "ROI table {wildcards.ses_prefix} ({wildcards.nordic}-{wildcards.combine})"
    shell:
        "python -m echoprep rois table --nc {input.nc:q} --r2 {input.r2:q} --masks {input.masks:q}"
        " --variant {params.variant:q} --out tsv={output.tsv:q} 2> {log:q}"
