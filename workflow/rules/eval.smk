# The teacher's mIoU on the evaluation split, the same way for trained and supplied teachers
# (the tables' "teacher mIoU" column).


rule eval_teacher:
    input:
        data=data_input,
        model=teacher_model_input,
    output:
        f"{RUNS}/{{dataset}}/teachers/{{teacher}}/eval.json",
    params:
        args=rule_args("eval_teacher"),
    log:
        f"{LOGS}{{dataset}}/teachers/{{teacher}}_eval.log",
    benchmark:
        f"{BENCH}{{dataset}}/teachers/{{teacher}}_eval.tsv"
    threads: THREADS
    resources:
        gpu=1,
        mem_mb=mem_mb,
        runtime=60,
    conda:
        "../envs/harness.yaml"
    shell:
        on_devices(1, "python -m harness {params.args} --out {output} > {log} 2>&1")
