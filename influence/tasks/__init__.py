"""Experiment functions (E1–E7): the science behind each workflow rule, callable from Python.

One module per experiment, plus the helpers several of them share:

* :mod:`~influence.tasks.common`: model recipes, training, evaluation, retraining on a subset, noisy splits.
* :mod:`~influence.tasks.e1_fidelity`: agreement of every estimator with trajectory LOO.
* :mod:`~influence.tasks.e2_detection`: noisy-sample detection and cleansing.
* :mod:`~influence.tasks.e3_curation`: online curation under label noise.
* :mod:`~influence.tasks.e4_deletion`: deletion task and coresets / pruning.
* :mod:`~influence.tasks.e6_cost`: wall time and peak memory from the provenance records.
* :mod:`~influence.tasks.e7_peers`: side by side with the peer libraries.
* :mod:`~influence.tasks.e8_lm`: char-level LM pretraining with online data filtering; per-step Shapley on the LM.
* :mod:`~influence.tasks.e9_text`: noisy-label text classification with a from-scratch transformer.

(E5, the bounds, lives in :mod:`influence.bounds`.)
"""
