# E5: one job per theory check (functions in influence/bounds/*.py returning influence.bounds.Check).


rule bounds:
    conda:
        CORE_ENV
    input:
        unpack(_check_inputs),
    output:
        f"{RES}/bounds/{{check}}.json",
    params:
        spec=_check_spec,
    log:
        f"{RES}/logs/bounds/{{check}}.log",
    benchmark:
        f"{RES}/benchmarks/bounds/{{check}}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    script:
        "../scripts/bounds.py"


rule table_E5:
    conda:
        CORE_ENV
    input:
        expand(f"{RES}/bounds/{{check}}.json", check=list(bound_checks())),
    output:
        csv=f"{RES}/metrics/E5_bounds.csv",
        series=f"{RES}/metrics/E5_series.json",  # the checks' full records: what the E5 notebook draws
    log:
        f"{RES}/logs/tables/E5.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/collect_bounds.py"
