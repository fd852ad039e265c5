# Each student alone (method baseline): the reference every delta is measured against.


rule train_student:
    input:
        data_input,
    output:
        metrics=f"{RUNS}/{{dataset}}/students/{{student}}/seed{{seed}}/metrics.json",
        model=R.model_files(f"{RUNS}/{{dataset}}/students/{{student}}/seed{{seed}}/model"),
    params:
        launch=LAUNCH,
        args=rule_args("train_student"),
        out=lambda wildcards, output: os.path.dirname(output.metrics),
    log:
        f"{LOGS}{{dataset}}/students/{{student}}_seed{{seed}}.log",
    benchmark:
        f"{BENCH}{{dataset}}/students/{{student}}_seed{{seed}}.tsv"
    threads: THREADS
    resources:
        gpu=GPUS,
        mem_mb=mem_mb,
        runtime=runtime("student_runtime"),
    conda:
        "../envs/harness.yaml"
    shell:
        on_devices(GPUS, "{params.launch} -m harness {params.args} --out {params.out} > {log} 2>&1")
