# Every rule of the workflow, from its definition in echoprep.plan.families (one module per
# family: the rule's files, params, command, resources, env, group and message; see
# docs/architecture.md, "Rules"). The rules this file makes, by family module (a per-run
# chain's rule for runs with another echo count is <name>_<n>echoes); `snakemake
# --list-rules` prints each with what it makes and the file and line of its definition, and
# docs/reference/rules.md shows each whole (inputs, outputs, params, command, resources):
#
# <rules>
#   describe.py      config_snapshot, dataset_description
#   chains.py        nordic, spatial_resample
#   combine.py       single_echo, optcom, tedana, tedana_nordic
#   spatial.py       spatial_reference, spatial_run, spatial_subject, confounds
#   anatomy.py       anatomy
#   glm.py           analysis_mask, glm, glm_reference, glm_heldout
#   noiseceiling.py  noiseceiling_session, noiseceiling_subject, noiseceiling_repeats
#   surface.py       surface_anatomy, surface_session, surface_subject, surface_bold
#   rois.py          rois_visual, rois_mask, rois_table
#   planted.py       planted_design, planted_glm
#   planted_run.py   planted_run
#   report.py        diagnostics, subject_report
#   comparison.py    comparison_subject, comparison
#   publish.py       publish_session, publish_subject, publish_repeats, publish_roi, publish_surface
# </rules>
#
# One block per kind of rule: a shell command submitted as a job, a shell command run next to
# Snakemake (localrule, no benchmark), a Python function run inside the Snakemake process.
#
# Snakemake evaluates a rule's shell: line again when its job runs, and runs its run: block
# then, after this loop has ended: both look the rule up by its name (`rule`, which Snakemake
# gives the job; shell_of in common.smk), never through the loop's variable, which then holds
# the last rule's spec.


for _spec in PLAN.specs():
    if _spec.run is not None or not _spec.local:
        continue

    rule:
        name:
            _spec.name
        input:
            unpack(_spec.input_function),
            **_spec.input,
        output:
            **_spec.output,
        log:
            _spec.log,
        wildcard_constraints:
            **_spec.wildcard_constraints,
        localrule: True
        conda:
            _spec.conda
        threads: _spec.threads
        resources:
            **_spec.resources,
        params:
            **_spec.params,
        message:
            _spec.message
        shell:
            shell_of(locals())


for _spec in PLAN.specs():
    if _spec.run is not None or _spec.local:
        continue

    rule:
        name:
            _spec.name
        input:
            unpack(_spec.input_function),
            **_spec.input,
        output:
            **_spec.output,
        log:
            _spec.log,
        benchmark:
            _spec.benchmark
        wildcard_constraints:
            **_spec.wildcard_constraints,
        group:
            _spec.group
        conda:
            _spec.conda
        threads: _spec.threads
        resources:
            **_spec.resources,
        params:
            **_spec.params,
        message:
            _spec.message
        shell:
            shell_of(locals())


for _spec in PLAN.specs():
    if _spec.run is None:
        continue

    rule:
        name:
            _spec.name
        input:
            unpack(_spec.input_function),
            **_spec.input,
        output:
            **_spec.output,
        log:
            _spec.log,
        wildcard_constraints:
            **_spec.wildcard_constraints,
        localrule: True
        params:
            **_spec.params,
        message:
            _spec.message
        run:
            PLAN.spec_of(rule).run(input, output, params, log)


# Each rule's docstring: what one job makes and where the rule is defined (the file and line of
# its RuleDef), which `snakemake --list-rules` prints. A rule block in a loop cannot take a
# docstring of its own (Snakemake's parser wants a string literal there).
for _spec in PLAN.specs():
    workflow.get_rule(_spec.name).docstring = _spec.doc
