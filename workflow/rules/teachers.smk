# Teachers trained by the workflow (method baseline at the teacher schedule). A teacher with
# `checkpoint:` set in the config is never trained: its folder is used as is.


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
