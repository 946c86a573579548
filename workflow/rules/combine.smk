# Echo handling per run: single-echo baseline, tedana optimal combination, tedana ICA denoising.


rule combine_description:
    output:
        OUT / "combine-{nordic}" / "dataset_description.json",
    log:
        LOGS / "combine-{nordic}" / "dataset_description.log",
    localrule: True
    conda:
        "../../envs/echoprep.yaml"
    params:
        config=config_json(),
        source=Path(config["bids_dir"]).resolve(),
    shell:
        "python -m echoprep describe combine {output} --source {params.source:q}"
        " --config-json {params.config:q} 2> {log}"


rule single_echo:
    input:
        echoes=echo_inputs,
    output:
        **combine_outputs("single"),
    log:
        LOGS / "combine-{nordic}" / "{run_dir}" / "{run_prefix}_single.log",
    benchmark:
        BENCH / "combine-{nordic}" / "{run_dir}" / "{run_prefix}_single.tsv"
    conda:
        "../../envs/echoprep.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: run_mb(run_of(wc), 0.5) * attempt,
        runtime=lambda wc, attempt: 10 * attempt,
    params:
        te=echo_times,
        tr=combine_repetition_time,
        echo=config["single_echo"]["echo"],
        drop=noise_volumes_to_drop,
    shell:
        "python -m echoprep combine single --echo {input.echoes} --te {params.te} --tr {params.tr}"
        " --single-echo {params.echo} --drop-volumes {params.drop} --out bold={output.bold}"
        " 2> {log}"


rule optcom:
    input:
        echoes=echo_inputs,
    output:
        **combine_outputs("optcom"),
    log:
        LOGS / "combine-{nordic}" / "{run_dir}" / "{run_prefix}_optcom.log",
    benchmark:
        BENCH / "combine-{nordic}" / "{run_dir}" / "{run_prefix}_optcom.tsv"
    conda:
        "../../envs/tedana.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: run_mb(run_of(wc), 3) * attempt,
        runtime=lambda wc, attempt: 20 * attempt,
    params:
        te=echo_times,
        tr=combine_repetition_time,
        fittype=config["optcom"]["fittype"],
        masktype=config["optcom"]["masktype"],
        drop=noise_volumes_to_drop,
        work=lambda wc: WORK / "tmp" / f"combine-{wc.nordic}",
    shell:
        "python -m echoprep combine optcom --echo {input.echoes} --te {params.te} --tr {params.tr}"
        " --fittype {params.fittype} --masktype {params.masktype} --work-dir {params.work}"
        " --threads {threads} --drop-volumes {params.drop} --out bold={output.bold}"
        " t2star={output.t2star}"
        " s0={output.s0} mask={output.mask} 2> {log}"


# ICA denoising. NORDIC-on runs have their own rule: their component count comes from the
# NORDIC-off run's ICA (tedana.nordic_tedpca: raw_run), and Snakemake's --until cannot follow a
# rule whose jobs depend on jobs of the same rule.
rule tedana:
    input:
        unpack(tedana_inputs),
    output:
        **combine_outputs("denoised"),
    log:
        LOGS / "combine-{nordic}" / "{run_dir}" / "{run_prefix}_tedana.log",
    benchmark:
        BENCH / "combine-{nordic}" / "{run_dir}" / "{run_prefix}_tedana.tsv"
    wildcard_constraints:
        nordic="raw",
    conda:
        "../../envs/tedana.yaml"
    threads: 2
    resources:
        mem_mb=lambda wc, attempt: run_mb(run_of(wc), 6) * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
    params:
        te=echo_times,
        tr=combine_repetition_time,
        opts=tedana_options,
        seed=config["seed"],
        work=lambda wc: WORK / "tmp" / f"combine-{wc.nordic}",
        drop=noise_volumes_to_drop,
        pca=tedana_pca_args,
    shell:
        "python -m echoprep combine denoised --echo {input.echoes} --te {params.te} --tr {params.tr}"
        " --fittype {params.opts[fittype]} --masktype {params.opts[masktype]}"
        " {params.pca} --tree {params.opts[tree]}"
        " --ica-method {params.opts[ica_method]} --n-robust-runs {params.opts[n_robust_runs]}"
        " --maxit {params.opts[maxit]} --maxrestart {params.opts[maxrestart]}"
        " --seed {params.seed} --work-dir {params.work} --threads {threads}"
        " --drop-volumes {params.drop}"
        " --out bold={output.bold} metrics={output.metrics} mixing={output.mixing} 2> {log}"


use rule tedana as tedana_nordic with:
    wildcard_constraints:
        nordic="nordic",
