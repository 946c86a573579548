# ROI masks on each subject's functional grid (user masks, the visually responsive ROI) and the
# ROI table of every session and variant (echoprep.stages.rois).


rule roi_visual:
    input:
        unpack(PLAN.visual_roi_inputs),
    output:
        **PLAN.roi_mask_outputs(visual=True),
    log:
        PLAN.log("roi_visual"),
    benchmark:
        PLAN.benchmark("roi_visual")
    conda:
        "../../envs/echoprep.yaml"
    threads: 1
    resources:
        mem_mb=PLAN.mem_mb("roi_visual"),
        runtime=PLAN.runtime("roi_visual"),
    params:
        options=PLAN.options("rois"),
        variant=PLAN.visual_roi_variant,
    message:
        "Visual ROI sub-{wildcards.subject} res-{wildcards.roi_res}"
    shell:
        "python -m echoprep rois visual --betas {input.betas} --trials {input.trials}"
        " --summary {input.summary} --onoff-r2 {input.onoff_r2} --brain-mask {input.mask}"
        " --analysis-mask {input.analysis} --options-json {params.options:q}"
        " --variant {params.variant} --out mask={output.mask} 2> {log}"


rule roi_mask:
    input:
        unpack(PLAN.user_roi_inputs),
    output:
        **PLAN.roi_mask_outputs(),
    log:
        PLAN.log("roi_mask"),
    benchmark:
        PLAN.benchmark("roi_mask")
    wildcard_constraints:
        # the visual ROI's label is reserved (roi_visual writes it)
        roi_label=r"(?!visuallyResponsive(?![A-Za-z0-9]))[A-Za-z0-9]+",
    conda:
        "../../envs/spatial.yaml"
    threads: 1
    resources:
        mem_mb=PLAN.mem_mb("roi_mask"),
        runtime=PLAN.runtime("roi_mask"),
    params:
        args=PLAN.user_roi_params,
    message:
        "ROI {wildcards.roi_category}/{wildcards.roi_label} sub-{wildcards.subject} res-{wildcards.roi_res}"
    shell:
        "python -m echoprep rois mask --mask {input.mask} --reference {input.reference}"
        " {params.args} --out mask={output.mask} 2> {log}"


rule roi_table:
    input:
        unpack(PLAN.roi_table_inputs),
    output:
        **PLAN.roi_table_path(),
    log:
        PLAN.log("roi_table"),
    localrule: True
    conda:
        "../../envs/echoprep.yaml"
    threads: 1
    resources:
        mem_mb=PLAN.mem_mb("roi_table"),
        runtime=PLAN.runtime("roi_table"),
    params:
        variant=lambda wc: f"{wc.nordic}-{wc.combine}",
    message:
        "ROI table {wildcards.ses_prefix} ({wildcards.nordic}-{wildcards.combine})"
    shell:
        "python -m echoprep rois table --nc {input.nc} --r2 {input.r2} --masks {input.masks}"
        " --variant {params.variant} --out tsv={output.tsv} 2> {log}"
