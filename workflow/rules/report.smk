# The 2x3 preprocessing comparison (echoprep.stages.comparison), the NORDIC diagnostics and one
# self-contained HTML report per subject (echoprep.stages.report). `snakemake --report` shows the
# comparison figure and the subject reports with the captions in workflow/report/.


rule comparison_subject:
    input:
        unpack(PLAN.comparison_subject_inputs),
    output:
        **PLAN.comparison_subject_paths(),
    log:
        PLAN.log("comparison_subject"),
    benchmark:
        PLAN.benchmark("comparison_subject")
    conda:
        "../../envs/echoprep.yaml"
    threads: 1
    resources:
        mem_mb=PLAN.mem_mb("comparison_subject"),
        runtime=PLAN.runtime("comparison_subject"),
    params:
        entries=PLAN.comparison_subject_args,
        options=PLAN.options("comparison"),
        seed=config["seed"],
    message:
        "Variant comparison sub-{wildcards.subject}"
    shell:
        "python -m echoprep comparison subject {params.entries}"
        " --options-json {params.options:q} --seed {params.seed}"
        " --out tsv={output.tsv} bootstrap={output.bootstrap} 2> {log}"


rule comparison:
    input:
        unpack(PLAN.comparison_inputs),
    output:
        tsv=PLAN.comparison_paths()["tsv"],
        png=report(
            PLAN.comparison_paths()["png"],
            caption=str(REPORT_CAPTIONS / "comparison.rst"),
            category="Preprocessing comparison",
        ),
        svg=PLAN.comparison_paths()["svg"],
        json=PLAN.comparison_paths()["json"],
    log:
        PLAN.log("comparison"),
    localrule: True
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=PLAN.mem_mb("comparison"),
        runtime=PLAN.runtime("comparison"),
    params:
        options=PLAN.options("comparison"),
    message:
        "Variant comparison, all subjects"
    shell:
        "python -m echoprep comparison group --table {input.tables}"
        " --bootstrap-table {input.bootstraps} --options-json {params.options:q}"
        " --out tsv={output.tsv} png={output.png} svg={output.svg} json={output.json}"
        " 2> {log}"


rule nordic_diagnostics:
    input:
        unpack(PLAN.diagnostics_inputs),
    output:
        **PLAN.diagnostics_outputs(),
    log:
        PLAN.log("nordic_diagnostics"),
    benchmark:
        PLAN.benchmark("nordic_diagnostics")
    conda:
        "../../envs/echoprep.yaml"
    threads: 1
    resources:
        mem_mb=PLAN.mem_mb("nordic_diagnostics"),
        runtime=PLAN.runtime("nordic_diagnostics"),
    params:
        args=PLAN.diagnostics_args,
    message:
        "NORDIC diagnostics sub-{wildcards.subject}"
    shell:
        "python -m echoprep diagnostics --subject {wildcards.subject} --roi {input.roi}"
        " --brain {input.brain} {params.args} --out tsv={output.tsv} 2> {log}"


rule subject_report:
    input:
        unpack(PLAN.report_inputs),
        config=PLAN.config_file(),
    output:
        report(
            PLAN.report_path(),
            caption=str(REPORT_CAPTIONS / "subject.rst"),
            category="Subject reports",
        ),
    log:
        PLAN.log("subject_report"),
    benchmark:
        PLAN.benchmark("subject_report")
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=PLAN.mem_mb("subject_report"),
        runtime=PLAN.runtime("subject_report"),
    params:
        args=PLAN.report_args,
        options=PLAN.options("report"),
    message:
        "HTML report sub-{wildcards.subject}"
    shell:
        "python -m echoprep report {params.args} --config-file {input.config:q}"
        " --options-json {params.options:q} --out html={output} 2> {log}"
