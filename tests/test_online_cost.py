"""The transformer step-cost job (claim LAI-4): rows, footprint accounting, ordering that cannot flip."""

import pytest
import torch

from replication.tasks.online_cost import POLICIES, step_costs

GPT = dict(vocab_size=13, context=8, d_model=16, n_layers=1, n_heads=2)


def test_rows_and_footprints():
    rows = step_costs("gpt", model=GPT, batch_size=6, target_size=4, repeats=3, warmup=1)
    assert len(rows) == 3 * len(POLICIES)
    by = {r["policy"]: r for r in rows}
    assert set(by) == set(POLICIES)
    assert all(r["step_time_s"] > 0 and r["step_cpu_s"] > 0 for r in rows)
    # rounds: every policy once per round, numbered 0..repeats-1 (the claims pair the policies within a round)
    assert sorted(r["rep"] for r in rows if r["policy"] == "lai") == [0, 1, 2]
    # the order rotates by one per round (round k, after one warm-up round, starts with policy k + 1)
    for r in rows:
        assert r["slot"] == (POLICIES.index(r["policy"]) - (r["rep"] + 1)) % len(POLICIES)
    assert {(r["rep"], r["slot"]) for r in rows} == {(k, j) for k in range(3) for j in range(len(POLICIES))}
    # the footprint is an exact count: Ghost holds every layer's output gradients on top of LAI's inputs,
    # and a validation batch costs more than self-influence
    assert by["lai"]["footprint_mb"] < by["ghost"]["footprint_mb"]
    assert by["lai_self"]["footprint_mb"] < by["ghost_self"]["footprint_mb"]
    assert by["ghost_self"]["footprint_mb"] < by["ghost"]["footprint_mb"]
    assert by["vanilla"]["capture_mb"] == 0 and by["vanilla"]["saved_mb"] > 0
    assert by["ghost"]["footprint_mb"] == by["ghost_flat"]["footprint_mb"]  # the same pass, another product
    # deterministic: a second run counts the same bytes
    again = {r["policy"]: r for r in step_costs("gpt", model=GPT, batch_size=6, target_size=4, repeats=2, warmup=0)}
    assert all(again[p]["footprint_mb"] == by[p]["footprint_mb"] for p in POLICIES)


def test_encoder_and_bad_arguments():
    torch.set_num_threads(2)
    try:
        rows = step_costs("encoder", model=dict(GPT, n_classes=3), batch_size=5, target_size=3, repeats=2, warmup=0,
                          policies=("vanilla", "lai"))
        assert torch.get_num_threads() == 2  # timed on one thread, the count restored after
    finally:
        torch.set_num_threads(1)
    assert {r["model"] for r in rows} == {"encoder"} and len(rows) == 4
    with pytest.raises(ValueError, match="repeats"):
        step_costs("gpt", model=GPT, repeats=1)
    with pytest.raises(ValueError, match="unknown policies"):
        step_costs("gpt", model=GPT, policies=("nope",))
    with pytest.raises(ValueError, match="model kind"):
        step_costs("lstm", model=GPT)
