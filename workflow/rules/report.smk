# Tables and figures of one dataset, from the run folders (python -m harness report ...), and
# the cost of each method (python -m harness bench).


rule table:
    input:
        unpack(table_input),
    output:
        csv=report(
            f"{RESULTS}/table_{{dataset}}.csv",
            caption="../report/table.rst",
            category="Tables",
            labels={"dataset": "{dataset}", "table": "main"},
        ),
        md=f"{RESULTS}/table_{{dataset}}.md",
        tex=f"{RESULTS}/table_{{dataset}}.tex",
    params:
        args=rule_args("table"),
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
        "python -m harness {params.args} --out {output.csv} > {log} 2>&1"


rule ablation:
    input:
        ablation_input,
    output:
        csv=f"{RESULTS}/ablation_{{dataset}}.csv",
        png=report(
            f"{RESULTS}/ablation_{{dataset}}.png",
            caption="../report/ablation.rst",
            category="Ablation",
            labels={"dataset": "{dataset}", "figure": "KMM / KEM ablation"},
        ),
    params:
        args=rule_args("ablation"),
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
        "python -m harness {params.args} --out {output.csv} > {log} 2>&1"


rule sensitivity:
    input:
        sensitivity_input,
    output:
        csv=f"{RESULTS}/sensitivity_{{dataset}}.csv",
        png=report(
            f"{RESULTS}/sensitivity_{{dataset}}.png",
            caption="../report/sensitivity.rst",
            category="Sensitivity",
            labels={"dataset": "{dataset}", "figure": "lambda grid"},
        ),
    params:
        args=rule_args("sensitivity"),
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
        "python -m harness {params.args} --out {output.csv} > {log} 2>&1"


rule curves:
    input:
        curves_input,
    output:
        csv=f"{RESULTS}/curves_{{dataset}}.csv",
        png=report(
            f"{RESULTS}/curves_{{dataset}}.png",
            caption="../report/curves.rst",
            category="Figures",
            labels={"dataset": "{dataset}", "figure": "training curves"},
        ),
    params:
        args=rule_args("curves"),
    log:
        f"{LOGS}{{dataset}}/curves.log",
    benchmark:
        f"{BENCH}{{dataset}}/curves.tsv"
    threads: 1
    resources:
        gpu=0,
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/harness.yaml"
    shell:
        "python -m harness {params.args} --out {output.csv} > {log} 2>&1"


rule readings:
    input:
        readings_input,
    output:
        csv=report(
            f"{RESULTS}/readings_{{dataset}}.csv",
            caption="../report/readings.rst",
            category="Readings",
            labels={"dataset": "{dataset}", "table": "readings"},
        ),
        md=f"{RESULTS}/readings_{{dataset}}.md",
        png=report(
            f"{RESULTS}/readings_{{dataset}}.png",
            caption="../report/readings.rst",
            category="Readings",
            labels={"dataset": "{dataset}", "figure": "readings"},
        ),
    params:
        args=rule_args("readings"),
    log:
        f"{LOGS}{{dataset}}/readings.log",
    benchmark:
        f"{BENCH}{{dataset}}/readings.tsv"
    threads: 1
    resources:
        gpu=0,
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/harness.yaml"
    shell:
        "python -m harness {params.args} --out {output.csv} > {log} 2>&1"


rule claims:
    input:
        unpack(claims_input),
    output:
        csv=report(
            f"{RESULTS}/claims_{{dataset}}.csv",
            caption="../report/claims.rst",
            category="Claims",
            labels={"dataset": "{dataset}", "table": "claims"},
        ),
        md=f"{RESULTS}/claims_{{dataset}}.md",
    params:
        args=rule_args("claims"),
    log:
        f"{LOGS}{{dataset}}/claims.log",
    benchmark:
        f"{BENCH}{{dataset}}/claims.tsv"
    threads: 1
    resources:
        gpu=0,
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/harness.yaml"
    shell:
        "python -m harness {params.args} --out {output.csv} > {log} 2>&1"


rule cka:
    input:
        data=data_input,
        models=cka_input,
    output:
        csv=f"{RESULTS}/cka_{{dataset}}.csv",
        png=report(
            f"{RESULTS}/cka_{{dataset}}.png",
            caption="../report/cka.rst",
            category="Figures",
            labels={"dataset": "{dataset}", "figure": "CKA"},
        ),
    params:
        args=rule_args("cka"),
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
        on_devices(1, "python -m harness {params.args} --out {output.png} > {log} 2>&1")


rule qualitative:
    input:
        data=data_input,
        models=qualitative_input,
    output:
        report(
            f"{RESULTS}/qualitative_{{dataset}}.png",
            caption="../report/qualitative.rst",
            category="Figures",
            labels={"dataset": "{dataset}", "figure": "qualitative"},
        ),
    params:
        args=rule_args("qualitative"),
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
        on_devices(1, "python -m harness {params.args} --out {output} > {log} 2>&1")


# The cost benchmark times synthetic batches: it needs no dataset, so it can run while the
# dataset is prepared.
rule cost:
    output:
        csv=f"{RESULTS}/cost_{{dataset}}.csv",
        md=f"{RESULTS}/cost_{{dataset}}.md",
    params:
        args=rule_args("cost"),
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
            1, "python -m harness {params.args} --threads {threads} --out {output.csv} > {log} 2>&1"
        )


# The finished runs of a dataset's grid (teachers and their saved models included) into its
# recorded-runs store (`snakemake record`; README "Compare a new method against recorded runs").
# The store itself is no output (Snakemake would delete it before the job): the job merges into
# it and touches a flag beside the results.
rule record_runs:
    input:
        record_input,
    output:
        touch(f"{RESULTS}/recorded_{{dataset}}.done"),
    params:
        args=rule_args("record_runs"),
    log:
        f"{LOGS}{{dataset}}/record.log",
    threads: 1
    resources:
        gpu=0,
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/harness.yaml"
    shell:
        "python -m harness {params.args} > {log} 2>&1"


rule record:
    input:
        [f"{RESULTS}/recorded_{name}.done" for name in config["default_datasets"]],
