"""The replication of the four papers (LAI, Diff-In, CG-score, ACC-SGD-IE) on top of the library.

What exists to reproduce and judge the papers lives here, apart from the library :mod:`influence` that a
user imports to score their own model:

* :mod:`replication.tasks` — one module per experiment (E1–E12), called by the workflow's rule scripts;
* :mod:`replication.bounds` — the numerical checks of each paper's theoretical statements (E5);
* :mod:`replication.claims` — the claims engine (verdicts from ``paper/claims.yaml``);
* :mod:`replication.report` — the numbers, tables and macros of the LaTeX report;
* :mod:`replication.plotting` — figures (seaborn) with one colour per method;
* :mod:`replication.noise` — label noise and feature corruption for the noisy-label experiments;
* :mod:`replication.text`, :mod:`replication.text_plays` — the text corpora of E8/E9;
* :mod:`replication.notebook`, :mod:`replication.bounds.notebook` — what the notebooks share (E5's sections and
  lines included); :mod:`replication.notebook_html` — their HTML copies, maths as MathML, readable offline.

Arrows run one way: this package imports :mod:`influence`; nothing in :mod:`influence` imports it.
"""
