# One distilled student per (pair, method variant, seed): main table, ablation and sensitivity
# variants share this rule; the variant's method/preset/options come from the config grid.


rule distill:
    input:
        data=data_input,
        teacher=teacher_model_input,
    output:
        metrics=f"{RUNS}/{{dataset}}/{{teacher}}__{{student}}/{{variant}}/seed{{seed}}/metrics.json",
        model=R.model_files(
            f"{RUNS}/{{dataset}}/{{teacher}}__{{student}}/{{variant}}/seed{{seed}}/model"
        ),
    params:
        launch=LAUNCH,
        args=rule_args("distill"),
        out=lambda wildcards, output: os.path.dirname(output.metrics),
    log:
        f"{LOGS}{{dataset}}/{{teacher}}__{{student}}/{{variant}}_seed{{seed}}.log",
    benchmark:
        f"{BENCH}{{dataset}}/{{teacher}}__{{student}}/{{variant}}_seed{{seed}}.tsv"
    threads: THREADS
    resources:
        gpu=GPUS,
        mem_mb=mem_mb,
        runtime=runtime("student_runtime"),
    conda:
        "../envs/harness.yaml"
    shell:
        on_devices(GPUS, "{params.launch} -m harness {params.args} --out {params.out} > {log} 2>&1")
