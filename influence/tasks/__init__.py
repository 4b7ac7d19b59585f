"""Experiment functions (E1–E7): the science behind each workflow rule, callable from Python."""
