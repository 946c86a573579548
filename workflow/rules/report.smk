# The 2x3 preprocessing comparison (echoprep.stages.comparison) and one self-contained HTML
# report per subject (echoprep.stages.report). `snakemake --report` shows the comparison figure
# and the subject reports with the captions in workflow/report/.
# Helpers: common.smk, section "ROIs, comparison and reports".


rule comparison_description:
    output:
        COMPARISON / "dataset_description.json",
    log:
        LOGS / "comparison" / "dataset_description.log",
    localrule: True
    conda:
        "../../envs/echoprep.yaml"
    params:
        config=config_json(),
        source=Path(config["bids_dir"]).resolve(),
    shell:
        "python -m echoprep describe comparison {output} --source {params.source:q}"
        " --config-json {params.config:q} 2> {log}"


rule report_description:
    output:
        REPORTS / "dataset_description.json",
    log:
        LOGS / "reports" / "dataset_description.log",
    localrule: True
    # the report stage module imports its figure code (matplotlib)
    conda:
        "../../envs/report.yaml"
    params:
        config=config_json(),
        source=Path(config["bids_dir"]).resolve(),
    shell:
        "python -m echoprep describe report {output} --source {params.source:q}"
        " --config-json {params.config:q} 2> {log}"


rule comparison_subject:
    input:
        unpack(comparison_subject_inputs),
    output:
        **comparison_subject_paths(),
    log:
        LOGS / "comparison" / "sub-{subject}_comparison.log",
    benchmark:
        BENCH / "comparison" / "sub-{subject}_comparison.tsv"
    conda:
        "../../envs/echoprep.yaml"
    threads: 1
    resources:
        mem_mb=comparison_subject_mb,
        runtime=lambda wc, attempt: 30 * attempt,
    params:
        entries=comparison_subject_args,
        n_boot=config["comparison"]["bootstrap"],
        seed=config["seed"],
    shell:
        "python -m echoprep comparison subject {params.entries}"
        " --bootstrap {params.n_boot} --seed {params.seed}"
        " --out tsv={output.tsv} bootstrap={output.bootstrap} 2> {log}"


rule comparison:
    input:
        unpack(comparison_inputs),
    output:
        tsv=comparison_paths()["tsv"],
        png=report(
            comparison_paths()["png"],
            caption=str(REPORT_CAPTIONS / "comparison.rst"),
            category="Preprocessing comparison",
        ),
        svg=comparison_paths()["svg"],
        json=comparison_paths()["json"],
    log:
        LOGS / "comparison" / "comparison.log",
    localrule: True
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 2000 * attempt,
        runtime=lambda wc, attempt: 10 * attempt,
    params:
        rank_by=config["comparison"]["rank_by"],
    shell:
        "python -m echoprep comparison group --table {input.tables}"
        " --bootstrap-table {input.bootstraps} --rank-by {params.rank_by}"
        " --out tsv={output.tsv} png={output.png} svg={output.svg} json={output.json}"
        " 2> {log}"


rule subject_report:
    input:
        unpack(report_inputs),
    output:
        report(
            REPORTS / "sub-{subject}.html",
            caption=str(REPORT_CAPTIONS / "subject.rst"),
            category="Subject reports",
        ),
    log:
        LOGS / "reports" / "sub-{subject}.log",
    benchmark:
        BENCH / "reports" / "sub-{subject}.tsv"
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=report_mb,
        runtime=lambda wc, attempt: 15 * attempt,
    params:
        args=report_args,
        config=config_json(),
    shell:
        "python -m echoprep report {params.args} --config-json {params.config:q}"
        " --out {output} 2> {log}"


rule nordic_diagnostics:
    input:
        unpack(diagnostics_inputs),
    output:
        **diagnostics_outputs(),
    log:
        LOGS / "reports" / "sub-{subject}_diagnostics.log",
    benchmark:
        BENCH / "reports" / "sub-{subject}_diagnostics.tsv"
    conda:
        "../../envs/echoprep.yaml"
    threads: 1
    resources:
        mem_mb=diagnostics_mb,
        runtime=lambda wc, attempt: 20 * attempt,
    params:
        args=diagnostics_args,
    shell:
        "python -m echoprep diagnostics --subject {wildcards.subject} --roi {input.roi}"
        " --brain {input.brain} {params.args} --out {output.tsv} 2> {log}"
