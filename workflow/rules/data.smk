# The built-in dataset is generated (seeded) and every file read back once (`data prepare`);
# real datasets are only checked (common.smk, before the first job).


rule prepare_data:
    output:
        f"{RUNS}/{{dataset}}/data.done",
    params:
        args=rule_args("prepare_data"),
    log:
        f"{LOGS}{{dataset}}/prepare_data.log",
    benchmark:
        f"{BENCH}{{dataset}}/prepare_data.tsv"
    threads: 1
    resources:
        gpu=0,
        mem_mb=2000,
        runtime=30,
    conda:
        "../envs/harness.yaml"
    shell:
        "python -m harness {params.args} > {log} 2>&1 && touch {output}"
