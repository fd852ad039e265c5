# The built-in dataset is generated (seeded) once; real datasets are only checked (common.smk).


rule prepare_data:
    output:
        f"{RUNS}/{{dataset}}/data.done",
    params:
        root=lambda wildcards: plan_of(wildcards).cfg["root"],
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
        "python -m harness data prepare {wildcards.dataset} --root {params.root} > {log} 2>&1"
        " && python -m harness data check {wildcards.dataset} --root {params.root} >> {log} 2>&1"
        " && touch {output}"
