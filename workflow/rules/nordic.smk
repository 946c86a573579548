# NORDIC thermal-noise denoising per run and echo (magnitude + phase, or magnitude only).


rule nordic_description:
    output:
        OUT / "nordic" / "dataset_description.json",
    log:
        LOGS / "nordic" / "dataset_description.log",
    localrule: True
    conda:
        "../../envs/echoprep.yaml"
    params:
        config=config_json(),
        source=Path(config["bids_dir"]).resolve(),
    shell:
        "python -m echoprep describe nordic {output} --source {params.source:q}"
        " --config-json {params.config:q} 2> {log}"


rule nordic:
    input:
        unpack(nordic_inputs),
    output:
        **nordic_outputs(),
    log:
        LOGS / "nordic" / "{run_dir}" / "{run_prefix}_echo-{echo}.log",
    benchmark:
        BENCH / "nordic" / "{run_dir}" / "{run_prefix}_echo-{echo}.tsv"
    conda:
        "../../envs/echoprep.yaml"
    threads: 2
    resources:
        mem_mb=lambda wc, attempt: run_mb(run_of(wc), 12 / len(run_of(wc).echoes))
        * attempt,
        runtime=lambda wc, attempt: 30 * attempt,
    params:
        phase=lambda wc, input: (
            f"--phase {input.phase}" if "phase" in input.keys() else ""
        ),
        options=nordic_options(),
        seed=config["seed"],
        te=lambda wc: echo_of(wc).echo_time,
        tr=repetition_time,
    shell:
        "python -m echoprep nordic --mag {input.mag} {params.phase}"
        " --options-json {params.options:q} --seed {params.seed} --threads {threads}"
        " --te {params.te} --tr {params.tr}"
        " --out bold={output.bold} gfactor={output.gfactor} removed={output.removed} 2> {log}"
