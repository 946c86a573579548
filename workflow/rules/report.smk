# The 2x3 preprocessing comparison (echoprep.stages.comparison), the NORDIC diagnostics and one
# self-contained HTML report per subject (echoprep.stages.report). `snakemake --report` shows the
# comparison figure and the subject reports with the captions in workflow/report/.
# Inputs, outputs, params, resources and the rest: PLAN.spec (echoprep.plan.specs).


_spec = PLAN.spec("comparison_subject")


rule comparison_subject:
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
        "Variant comparison sub-{wildcards.subject}"
    shell:
        "python -m echoprep comparison subject {params.entries}"
        " --options-json {params.options:q} --seed {params.seed}"
        " --out tsv={output.tsv:q} bootstrap={output.bootstrap:q} 2> {log:q}"


_spec = PLAN.spec("comparison")


rule comparison:
    input:
        unpack(_spec.input),
    output:
        tsv=_spec.output["tsv"],
        png=report(
            _spec.output["png"],
            caption=str(REPORT_CAPTIONS / "comparison.rst"),
            category="Preprocessing comparison",
        ),
        svg=_spec.output["svg"],
        json=_spec.output["json"],
    log:
        _spec.log,
    localrule: True
    conda:
        "../../envs/report.yaml"
    threads: _spec.threads
    resources:
        **_spec.resources,
    params:
        **_spec.params,
    message:
        "Variant comparison, all subjects"
    shell:
        "python -m echoprep comparison group --table {input.tables:q}"
        " --bootstrap-table {input.bootstraps:q} --options-json {params.options:q}"
        " --out tsv={output.tsv:q} png={output.png:q} svg={output.svg:q} json={output.json:q}"
        " 2> {log:q}"


_spec = PLAN.spec("nordic_diagnostics")


rule nordic_diagnostics:
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
        "NORDIC diagnostics sub-{wildcards.subject}"
    shell:
        "python -m echoprep diagnostics --subject {wildcards.subject} --roi {input.roi:q}"
        " --brain {input.brain:q} {params.args} --out tsv={output.tsv:q} 2> {log:q}"


_spec = PLAN.spec("subject_report")


rule subject_report:
    input:
        unpack(_spec.input),
    output:
        report(
            _spec.output["html"],
            caption=str(REPORT_CAPTIONS / "subject.rst"),
            category="Subject reports",
        ),
    log:
        _spec.log,
    benchmark:
        _spec.benchmark
    conda:
        "../../envs/report.yaml"
    threads: _spec.threads
    resources:
        **_spec.resources,
    params:
        **_spec.params,
    message:
        "HTML report sub-{wildcards.subject}"
    shell:
        "python -m echoprep report {params.args} --config-file {input.config:q}"
        " --options-json {params.options:q} --out html={output:q} 2> {log:q}"
