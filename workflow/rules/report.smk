# Tables and figures of one dataset, from the run folders (python -m harness report ...).


rule table:
    input:
        runs=lambda wildcards: metrics_of(plan_of(wildcards).table_runs()),
        teachers=lambda wildcards: [plan_of(wildcards).teacher_eval(t) for t in plan_of(wildcards).teachers],
        recorded=config["recorded"],
        cost=cost_input,
    output:
        csv=report(
            f"{RESULTS}/table_{{dataset}}.csv",
            caption="../report/table.rst",
            category="Tables",
            labels={"dataset": "{dataset}", "table": "main"},
        ),
        md=f"{RESULTS}/table_{{dataset}}.md",
    params:
        pairs=lambda wildcards: pair_tokens(plan_of(wildcards).pairs),
        methods=lambda wildcards: ",".join(plan_of(wildcards).main),
        teachers=lambda wildcards, input: " ".join(
            f"{t}={path}" for t, path in zip(plan_of(wildcards).teachers, input.teachers)
        ),
        split=lambda wildcards: plan_of(wildcards).cfg["val_split"],
        cost=lambda wildcards, input: f"--cost {input.cost}" if input.cost else "",
    log:
        f"{LOGS}{{dataset}}/table.log",
    benchmark:
        f"{BENCH}{{dataset}}/table.tsv"
    threads: 1
    resources:
        gpu=0,
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/harness.yaml"
    shell:
        "python -m harness report table --dataset {wildcards.dataset} --split {params.split}"
        " --pairs {params.pairs} --methods {params.methods} --teacher-eval {params.teachers}"
        " --recorded {input.recorded} {params.cost} --out {output.csv} {input.runs}"
        " > {log} 2>&1"


rule ablation:
    input:
        runs=lambda wildcards: metrics_of(plan_of(wildcards).ablation_runs()),
    output:
        csv=f"{RESULTS}/ablation_{{dataset}}.csv",
        png=report(
            f"{RESULTS}/ablation_{{dataset}}.png",
            caption="../report/ablation.rst",
            category="Ablation",
            labels={"dataset": "{dataset}", "figure": "KMM / KEM ablation"},
        ),
    params:
        pairs=lambda wildcards: pair_tokens(plan_of(wildcards).ablation_pairs),
        method=lambda wildcards: plan_of(wildcards).cfg["ablation"]["method"],
        presets=lambda wildcards: ",".join(plan_of(wildcards).ablation),
    log:
        f"{LOGS}{{dataset}}/ablation.log",
    benchmark:
        f"{BENCH}{{dataset}}/ablation.tsv"
    threads: 1
    resources:
        gpu=0,
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/harness.yaml"
    shell:
        "python -m harness report ablation --pairs {params.pairs} --method {params.method}"
        " --presets {params.presets} --out {output.csv} {input.runs} > {log} 2>&1"


rule sensitivity:
    input:
        runs=lambda wildcards: metrics_of(plan_of(wildcards).sensitivity_runs()),
    output:
        csv=f"{RESULTS}/sensitivity_{{dataset}}.csv",
        png=report(
            f"{RESULTS}/sensitivity_{{dataset}}.png",
            caption="../report/sensitivity.rst",
            category="Sensitivity",
            labels={"dataset": "{dataset}", "figure": "lambda grid"},
        ),
    params:
        pair=lambda wildcards: plan_of(wildcards).sensitivity_pair.token,
        method=lambda wildcards: plan_of(wildcards).cfg["sensitivity"]["method"],
        axes=lambda wildcards: ",".join(plan_of(wildcards).cfg["sensitivity"]["options"]),
    log:
        f"{LOGS}{{dataset}}/sensitivity.log",
    benchmark:
        f"{BENCH}{{dataset}}/sensitivity.tsv"
    threads: 1
    resources:
        gpu=0,
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/harness.yaml"
    shell:
        "python -m harness report sensitivity --pair {params.pair} --method {params.method}"
        " --axes {params.axes} --out {output.csv} {input.runs} > {log} 2>&1"


rule cka:
    input:
        data=data_input,
        models=cka_models,
    output:
        csv=f"{RESULTS}/cka_{{dataset}}.csv",
        png=report(
            f"{RESULTS}/cka_{{dataset}}.png",
            caption="../report/cka.rst",
            category="Figures",
            labels={"dataset": "{dataset}", "figure": "CKA"},
        ),
    params:
        pairs=cka_pair_args,
        root=lambda wildcards: plan_of(wildcards).cfg["root"],
        split=lambda wildcards: plan_of(wildcards).cfg["val_split"],
        images=lambda wildcards: plan_of(wildcards).cfg["cka"]["images"],
    log:
        f"{LOGS}{{dataset}}/cka.log",
    benchmark:
        f"{BENCH}{{dataset}}/cka.tsv"
    threads: THREADS
    resources:
        gpu=1,
        mem_mb=mem_mb,
        runtime=30,
    conda:
        "../envs/harness.yaml"
    shell:
        on_devices(
            1,
            "python -m harness report cka --dataset {wildcards.dataset} --root {params.root}"
            " --split {params.split} --images {params.images} {params.pairs} --out {output.png}"
            " > {log} 2>&1",
        )


rule qualitative:
    input:
        data=data_input,
        models=lambda wildcards: [
            f for m in qualitative_models(wildcards).values() for f in model_files(m)
        ],
    output:
        report(
            f"{RESULTS}/qualitative_{{dataset}}.png",
            caption="../report/qualitative.rst",
            category="Figures",
            labels={"dataset": "{dataset}", "figure": "qualitative"},
        ),
    params:
        models=lambda wildcards: " ".join(
            f"--model {label}={path}" for label, path in qualitative_models(wildcards).items()
        ),
        root=lambda wildcards: plan_of(wildcards).cfg["root"],
        split=lambda wildcards: plan_of(wildcards).cfg["val_split"],
        images=lambda wildcards: plan_of(wildcards).cfg["qualitative"]["images"],
    log:
        f"{LOGS}{{dataset}}/qualitative.log",
    benchmark:
        f"{BENCH}{{dataset}}/qualitative.tsv"
    threads: THREADS
    resources:
        gpu=1,
        mem_mb=mem_mb,
        runtime=30,
    conda:
        "../envs/harness.yaml"
    shell:
        on_devices(
            1,
            "python -m harness report qualitative --dataset {wildcards.dataset} --root {params.root}"
            " --split {params.split} --images {params.images} {params.models} --out {output}"
            " > {log} 2>&1",
        )


rule cost:
    input:
        data=data_input,
    output:
        csv=f"{RESULTS}/cost_{{dataset}}.csv",
        md=f"{RESULTS}/cost_{{dataset}}.md",
    params:
        pairs=lambda wildcards: " ".join(
            f"{p.teacher}:{p.student}" for p in plan_of(wildcards).pairs
        ),
        methods=bench_methods,
        crop=lambda wildcards: " ".join(map(str, plan_of(wildcards).cfg["schedule"]["crop"])),
        batch=lambda wildcards: (
            min(plan_of(wildcards).cfg["schedule"]["batch"], config["smoke"]["batch"])
            if config["scale"] == "smoke"
            else plan_of(wildcards).cfg["schedule"]["batch"]
        ),
        warmup=lambda wildcards: cost_setting(wildcards, "warmup"),
        repeats=lambda wildcards: cost_setting(wildcards, "repeats"),
        # smoke: time in this process (no fresh process per configuration)
        isolate="--isolate none" if config["scale"] == "smoke" else "",
    log:
        f"{LOGS}{{dataset}}/cost.log",
    benchmark:
        f"{BENCH}{{dataset}}/cost.tsv"
    threads: THREADS
    resources:
        gpu=1,
        mem_mb=mem_mb,
        runtime=60,
    conda:
        "../envs/harness.yaml"
    shell:
        on_devices(
            1,
            "python -m harness bench --dataset {wildcards.dataset} --crop {params.crop}"
            " --batch {params.batch} --pairs {params.pairs} --methods {params.methods}"
            " --warmup {params.warmup} --repeats {params.repeats} {params.isolate} --threads {threads}"
            " --out {output.csv} > {log} 2>&1",
        )
