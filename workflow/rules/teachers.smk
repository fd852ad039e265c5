# Teachers trained by the workflow (method baseline at the teacher schedule). A teacher with
# `model:` set in the config is never trained: its folder is used as is, or, with `format:`, the
# reference checkpoint file is converted once into a saved-model folder (import_teacher).


rule train_teacher:
    input:
        data_input,
    output:
        metrics=f"{RUNS}/{{dataset}}/teachers/{{teacher}}/seed{{seed}}/metrics.json",
        model=R.model_files(f"{RUNS}/{{dataset}}/teachers/{{teacher}}/seed{{seed}}/model"),
    params:
        launch=LAUNCH,
        args=rule_args("train_teacher"),
        out=lambda wildcards, output: os.path.dirname(output.metrics),
    log:
        f"{LOGS}{{dataset}}/teachers/{{teacher}}_seed{{seed}}.log",
    benchmark:
        f"{BENCH}{{dataset}}/teachers/{{teacher}}_seed{{seed}}.tsv"
    threads: THREADS
    resources:
        gpu=GPUS,
        mem_mb=mem_mb,
        runtime=runtime("teacher_runtime"),
    conda:
        "../envs/harness.yaml"
    shell:
        on_devices(GPUS, "{params.launch} -m harness {params.args} --out {params.out} > {log} 2>&1")


rule import_teacher:
    input:
        lambda wildcards: plan_of(wildcards).cfg["teachers"][wildcards.teacher]["model"],
    output:
        R.model_files(f"{RUNS}/{{dataset}}/teachers/{{teacher}}/imported"),
    params:
        args=rule_args("import_teacher"),
        out=lambda wildcards, output: os.path.dirname(output[0]),
    log:
        f"{LOGS}{{dataset}}/teachers/{{teacher}}_import.log",
    resources:
        mem_mb=mem_mb,
        runtime=30,
    conda:
        "../envs/harness.yaml"
    shell:
        "python -m harness {params.args} --out {params.out} > {log} 2>&1"
