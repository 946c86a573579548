# Echo handling per run: single-echo baseline, tedana optimal combination, tedana ICA denoising.

from echoprep.stages.combine import BIDSIGNORE as COMBINE_BIDSIGNORE
from echoprep.stages.combine import OUTPUTS as COMBINE_OUTPUTS


def combine_root(nordic):
    return OUT / f"combine-{nordic}"


def combine_outputs(variant, run=None, nordic="{nordic}"):
    """Output files (and their JSON sidecars) of a combine variant, as patterns or for a run."""
    key = run_key(run) if run is not None else ("{run_dir}", "{run_prefix}")
    files = {}
    for name, (suffix, entities, ext, _tool) in COMBINE_OUTPUTS[variant].items():
        files[name] = str(
            run_output(combine_root(nordic), key, suffix, ext, **entities)
        )
        files[f"{name}_json"] = str(
            run_output(combine_root(nordic), key, suffix, ".json", **entities)
        )
    return files


def combine_out_args(variant):
    """The --out KEY=PATH arguments of `echoprep combine` for a variant."""
    return " ".join(f"{k}={{output.{k}}}" for k in COMBINE_OUTPUTS[variant])


def echo_inputs(wildcards):
    """Magnitude image per echo of the run (echo-time order) for the NORDIC variant."""
    run = run_of(wildcards)
    if wildcards.nordic == "raw":
        return [str(e.mag) for e in run.echoes]
    raise WorkflowError(f"NORDIC variant {wildcards.nordic!r} is not available")


def echo_times(wildcards):
    return " ".join(f"{t:.6g}" for t in run_of(wildcards).echo_times)


def combine_targets():
    """Every combine output requested by the config, plus the dataset descriptions."""
    targets = []
    for nordic in NORDIC_VARIANTS:
        targets.append(str(combine_root(nordic) / "dataset_description.json"))
        for run in DATASET.runs:
            for variant in config["variants"]["combine"]:
                targets.extend(combine_outputs(variant, run, nordic).values())
    return targets


rule combine_description:
    output:
        OUT / "combine-{nordic}" / "dataset_description.json",
    localrule: True
    params:
        # sorted JSON: the same config read in another key order is not a change
        config=json.dumps(config, sort_keys=True),
    run:
        from echoprep.io.sidecars import write_dataset_description

        write_dataset_description(
            Path(output[0]).parent,
            f"echoprep echo handling ({wildcards.nordic})",
            description="single-echo baseline, tedana optimal combination and ICA denoising",
            config=json.loads(params.config),
            source_datasets=[str(Path(config["bids_dir"]).resolve())],
            bidsignore=COMBINE_BIDSIGNORE,
        )


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
        tr=lambda wc: run_of(wc).repetition_time,
        echo=config["single_echo"]["echo"],
    shell:
        ECHOPREP
        + " combine single --echo {input.echoes} --te {params.te} --tr {params.tr}"
        " --single-echo {params.echo} --out "
        + combine_out_args("single")
        + " 2> {log}"


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
        tr=lambda wc: run_of(wc).repetition_time,
        fittype=config["optcom"]["fittype"],
        masktype=" ".join(config["optcom"]["masktype"]),
        work=lambda wc: WORK / "tmp" / f"combine-{wc.nordic}",
    shell:
        ECHOPREP
        + " combine optcom --echo {input.echoes} --te {params.te} --tr {params.tr}"
        " --fittype {params.fittype} --masktype {params.masktype} --work-dir {params.work}"
        " --threads {threads} --out " + combine_out_args("optcom") + " 2> {log}"


rule tedana:
    input:
        echoes=echo_inputs,
    output:
        **combine_outputs("denoised"),
    log:
        LOGS / "combine-{nordic}" / "{run_dir}" / "{run_prefix}_tedana.log",
    benchmark:
        BENCH / "combine-{nordic}" / "{run_dir}" / "{run_prefix}_tedana.tsv"
    conda:
        "../../envs/tedana.yaml"
    threads: 2
    resources:
        mem_mb=lambda wc, attempt: run_mb(run_of(wc), 6) * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
    params:
        te=echo_times,
        tr=lambda wc: run_of(wc).repetition_time,
        opts=config["tedana"],
        masktype=" ".join(config["tedana"]["masktype"]),
        seed=config["seed"],
        work=lambda wc: WORK / "tmp" / f"combine-{wc.nordic}",
    shell:
        ECHOPREP
        + " combine denoised --echo {input.echoes} --te {params.te} --tr {params.tr}"
        " --fittype {params.opts[fittype]} --masktype {params.masktype}"
        " --tedpca {params.opts[tedpca]} --tree {params.opts[tree]}"
        " --ica-method {params.opts[ica_method]} --n-robust-runs {params.opts[n_robust_runs]}"
        " --maxit {params.opts[maxit]} --maxrestart {params.opts[maxrestart]}"
        " --seed {params.seed} --work-dir {params.work} --threads {threads} --out "
        + combine_out_args("denoised")
        + " 2> {log}"
