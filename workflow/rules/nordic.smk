# NORDIC thermal-noise denoising per run and echo (magnitude + phase, or magnitude only).


rule nordic:
    input:
        unpack(PLAN.nordic_inputs),
    output:
        **PLAN.nordic_outputs(),
    log:
        LOGS / "nordic" / "{run_dir}" / "{run_prefix}_echo-{echo}.log",
    benchmark:
        BENCH / "nordic" / "{run_dir}" / "{run_prefix}_echo-{echo}.tsv"
    conda:
        "../../envs/echoprep.yaml"
    threads: 2
    resources:
        mem_mb=PLAN.mem_mb("nordic"),
        runtime=PLAN.runtime("nordic"),
    params:
        args=PLAN.nordic_params,
        options=PLAN.options("nordic"),
        seed=config["seed"],
    message:
        "NORDIC {wildcards.run_prefix} echo-{wildcards.echo}"
    shell:
        "python -m echoprep nordic --mag {input.mag} {params.args}"
        " --options-json {params.options:q} --seed {params.seed} --threads {threads}"
        " --out bold={output.bold} gfactor={output.gfactor} removed={output.removed} 2> {log}"
