# ROI masks on each subject's functional grid (user masks, the visually responsive ROI) and the
# ROI table of every session and variant (echoprep.stages.rois).
# Helpers: common.smk, section "ROIs, comparison and reports".


wildcard_constraints:
    subject=r"[A-Za-z0-9]+",
    roi_category=r"[A-Za-z0-9]+",
    roi_label=r"[A-Za-z0-9]+",
    roi_res=r"[0-9]+(pt[0-9]+)?",


rule rois_description:
    output:
        ROIS / "dataset_description.json",
    log:
        LOGS / "rois" / "dataset_description.log",
    localrule: True
    conda:
        "../../envs/echoprep.yaml"
    params:
        config=config_json(),
        source=Path(config["bids_dir"]).resolve(),
    shell:
        "python -m echoprep describe rois {output} --source {params.source:q}"
        " --config-json {params.config:q} 2> {log}"


rule roi_visual:
    input:
        unpack(visual_roi_inputs),
    output:
        mask=rois_stage.roi_mask_path(
            ROIS,
            "{subject}",
            rois_stage.VISUAL_CATEGORY,
            rois_stage.VISUAL_LABEL,
            "{roi_res}",
            roi_space(),
        ),
        json=sidecar_path(
            rois_stage.roi_mask_path(
                ROIS,
                "{subject}",
                rois_stage.VISUAL_CATEGORY,
                rois_stage.VISUAL_LABEL,
                "{roi_res}",
                roi_space(),
            )
        ),
    log:
        LOGS / "rois" / "sub-{subject}_res-{roi_res}_visual.log",
    benchmark:
        BENCH / "rois" / "sub-{subject}_res-{roi_res}_visual.tsv"
    conda:
        "../../envs/echoprep.yaml"
    threads: 1
    resources:
        mem_mb=visual_roi_mb,
        runtime=lambda wc, attempt: 10 * attempt,
    params:
        opts=config["rois"]["visual"],
        variant=visual_roi_variant,
    shell:
        "python -m echoprep rois visual --betas {input.betas} --trials {input.trials}"
        " --summary {input.summary} --onoff-r2 {input.onoff_r2} --brain-mask {input.mask}"
        " --analysis-mask {input.analysis}"
        " --method {params.opts[method]} --threshold {params.opts[threshold]}"
        " --alpha {params.opts[alpha]} --correction {params.opts[correction]}"
        " --onoff-threshold {params.opts[onoff_threshold]}"
        " --min-voxels {params.opts[min_voxels]} --variant {params.variant}"
        " --out {output.mask} 2> {log}"


rule roi_mask:
    input:
        unpack(user_roi_inputs),
    output:
        mask=rois_stage.roi_mask_path(
            ROIS,
            "{subject}",
            "{roi_category}",
            "{roi_label}",
            "{roi_res}",
            roi_space(),
        ),
        json=sidecar_path(
            rois_stage.roi_mask_path(
                ROIS,
                "{subject}",
                "{roi_category}",
                "{roi_label}",
                "{roi_res}",
                roi_space(),
            )
        ),
    log:
        LOGS / "rois" / "sub-{subject}_{roi_category}_{roi_label}_res-{roi_res}.log",
    benchmark:
        BENCH / "rois" / "sub-{subject}_{roi_category}_{roi_label}_res-{roi_res}.tsv"
    wildcard_constraints:
        # the visual ROI's label is reserved (roi_visual writes it)
        roi_label=r"(?!visuallyResponsive(?![A-Za-z0-9]))[A-Za-z0-9]+",
    conda:
        "../../envs/spatial.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 2000 * attempt,
        runtime=lambda wc, attempt: 10 * attempt,
    params:
        args=user_roi_params,
    shell:
        "python -m echoprep rois mask --mask {input.mask} --reference {input.reference}"
        " {params.args} --out {output.mask} 2> {log}"


rule roi_table:
    input:
        unpack(roi_table_inputs),
    output:
        **roi_table_path(),
    log:
        LOGS / "glmsingle-{nordic}-{combine}" / "{ses_dir}" / "{ses_prefix}_rois.log",
    localrule: True
    conda:
        "../../envs/echoprep.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 2000 * attempt,
        runtime=lambda wc, attempt: 5 * attempt,
    params:
        variant=lambda wc: f"{wc.nordic}-{wc.combine}",
    shell:
        "python -m echoprep rois table --nc {input.nc} --r2 {input.r2} --masks {input.masks}"
        " --variant {params.variant} --out {output.tsv} 2> {log}"
