# Spatial preprocessing: geometry per run (raw reference echo), the functional grid per subject,
# one interpolation of every echo of both NORDIC variants (spatial/, preproc-<nordic>/).


rule spatial_description:
    output:
        SPATIAL_ROOT / "dataset_description.json",
    log:
        LOGS / "spatial" / "dataset_description.log",
    localrule: True
    conda:
        "../../envs/spatial.yaml"
    params:
        config=config_json(),
        source=Path(config["bids_dir"]).resolve(),
    shell:
        "python -m echoprep describe spatial {output} --source {params.source:q}"
        " --config-json {params.config:q} 2> {log}"


rule preproc_description:
    output:
        OUT / "preproc-{nordic}" / "dataset_description.json",
    log:
        LOGS / "preproc-{nordic}" / "dataset_description.log",
    localrule: True
    conda:
        "../../envs/spatial.yaml"
    params:
        config=config_json(),
        source=Path(config["bids_dir"]).resolve(),
    shell:
        "python -m echoprep describe spatial {output} --source {params.source:q}"
        " --config-json {params.config:q} 2> {log}"


rule spatial_run:
    input:
        unpack(spatial_run_inputs),
    output:
        **spatial_run_outputs(),
    log:
        LOGS / "spatial" / "{run_dir}" / "{run_prefix}_run.log",
    benchmark:
        BENCH / "spatial" / "{run_dir}" / "{run_prefix}_run.tsv"
    wildcard_constraints:
        run_prefix=SPATIAL_RUN_PREFIX,
    conda:
        "../../envs/spatial.yaml"
    threads: 2
    resources:
        mem_mb=spatial_mb,
        runtime=lambda wc, attempt: 20 * attempt,
    params:
        args=spatial_run_params,
        options=spatial_options(),
    shell:
        "python -m echoprep spatial run --echo {input.echo:q} {params.args}"
        " --options-json {params.options:q} --threads {threads}"
        " --out confounds={output.confounds:q} boldref={output.boldref:q} xfm={output.xfm:q}"
        " 2> {log}"


rule spatial_subject:
    input:
        unpack(spatial_subject_inputs),
    output:
        **spatial_subject_outputs(),
    log:
        LOGS / "spatial" / "sub-{subject}_subject.log",
    benchmark:
        BENCH / "spatial" / "sub-{subject}_subject.tsv"
    conda:
        "../../envs/spatial.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 3000 * attempt,
        runtime=lambda wc, attempt: 20 * attempt,
    params:
        options=spatial_options(),
        seed=config["seed"],
    shell:
        "python -m echoprep spatial subject --boldref {input.boldref:q} --t1w {input.t1w:q}"
        " --mask {input.mask:q} --options-json {params.options:q} --seed {params.seed}"
        " --threads {threads} --out boldref={output.boldref:q}"
        " brain_mask={output.brain_mask:q} xfm={output.xfm:q} 2> {log}"


rule spatial_resample:
    input:
        unpack(spatial_resample_inputs),
    output:
        **preproc_echo_outputs(),
    log:
        LOGS / "preproc-{nordic}" / "{run_dir}" / "{run_prefix}_echo-{echo}.log",
    benchmark:
        BENCH / "preproc-{nordic}" / "{run_dir}" / "{run_prefix}_echo-{echo}.tsv"
    wildcard_constraints:
        run_prefix=SPATIAL_RUN_PREFIX,
    conda:
        "../../envs/spatial.yaml"
    threads: 2
    resources:
        mem_mb=spatial_mb,
        runtime=lambda wc, attempt: 20 * attempt,
    params:
        args=spatial_resample_params,
        options=spatial_options(),
    shell:
        "python -m echoprep spatial resample --echo {input.echo:q} --geometry {input.geometry:q}"
        " --grid {input.grid:q} {params.args} --options-json {params.options:q}"
        " --threads {threads} --out-echo {output.bold:q} 2> {log}"
