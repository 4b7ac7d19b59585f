# E5: one job per theory check (functions in experiments/replication/bounds/*.py returning replication.bounds.Check).


rule bounds:
    input:
        unpack(_check_inputs),
    output:
        f"{RES}/bounds/{{check}}.json",
    log:
        f"{RES}/logs/bounds/{{check}}.log",
    benchmark:
        f"{RES}/benchmarks/bounds/{{check}}.tsv"
    conda:
        CORE_ENV
    threads: 1
    resources:
        **COST.of("bounds", (4000, 60)),
    params:
        spec=_check_spec,
    script:
        "../scripts/bounds.py"


rule table_E5:
    input:
        expand(f"{RES}/bounds/{{check}}.json", check=list(bound_checks())),
    output:
        csv=f"{RES}/metrics/E5_bounds.csv",
        series=f"{RES}/metrics/E5_series.json",  # the checks' full records: what the E5 notebook draws
    log:
        f"{RES}/logs/tables/E5.log",
    benchmark:
        f"{RES}/benchmarks/table_E5.tsv"
    conda:
        CORE_ENV
    threads: 1
    resources:
        **COST.of("table_E5", (1000, 5)),
    script:
        "../scripts/collect_bounds.py"
