"""Experiment functions (E1–E7): the science behind each workflow rule, callable from Python.

One module per experiment, plus the helpers several of them share:

* :mod:`~replication.tasks.common`: model recipes, training, evaluation, retraining on a subset, noisy splits.
* :mod:`~replication.tasks.e1_fidelity`: agreement of every estimator with trajectory LOO.
* :mod:`~replication.tasks.e2_detection`: noisy-sample detection and cleansing.
* :mod:`~replication.tasks.e3_curation`: online curation under label noise.
* :mod:`~replication.tasks.e4_deletion`: deletion task and coresets / pruning.
* :mod:`~replication.tasks.e6_cost`: wall time and peak memory from the provenance records.
* :mod:`~replication.tasks.e7_peers`: side by side with the peer libraries.
* :mod:`~replication.tasks.e8_lm`: char-level LM pretraining with online data filtering; per-step Shapley on the LM.
* :mod:`~replication.tasks.e9_text`: noisy-label text classification with a from-scratch transformer.

(E5, the bounds, lives in :mod:`replication.bounds`.)
"""
