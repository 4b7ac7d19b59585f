"""A failing rule script writes its exception (type, the library's message, the full traceback) into the log file
Snakemake names for the failed job (experiments/scripts/wfio.py)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
SMOKE = REPO / "experiments" / "config" / "smoke.yaml"
RUN = "results/runs/bc/sym20/logreg/ep2/seed0/run.pt"  # the smoke config's recorded run


@pytest.mark.slow
@pytest.mark.skipif(not SNAKEMAKE.exists(), reason="snakemake is not installed in this environment")
@pytest.mark.parametrize("batch_seeds", [False, True], ids=["per_seed", "batch_seeds"])
def test_diverging_training_run_writes_its_traceback_to_the_train_log(tmp_path, batch_seeds):
    cfg = yaml.safe_load(SMOKE.read_text())
    cfg["models"]["logreg"]["lr"] = 1e6  # the divergence guard stops the run at its second step
    config = tmp_path / "diverge.yaml"
    config.write_text(yaml.safe_dump(cfg))
    cmd = [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path), "--configfile", str(config),
           "--config", f"batch_seeds={batch_seeds}", "--cores", "1", RUN]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    out = res.stdout + res.stderr
    assert res.returncode != 0, out[-4000:]
    # the log Snakemake points to: seed0.log (one job per seed) or seeds.log (batch_seeds: one job for the seeds)
    named = re.findall(r"log: (\S+) \(check log file\(s\) for error details\)", out)
    expected = f"results/logs/train/bc/sym20/logreg/ep2/{'seeds' if batch_seeds else 'seed0'}.log"
    assert named == [expected], out[-4000:]
    logs = [tmp_path / expected]
    if batch_seeds:  # the seed's own log has it too
        logs.append(tmp_path / "results/logs/train/bc/sym20/logreg/ep2/seed0.log")
    for log in logs:
        text = log.read_text()
        assert "TrainingDiverged" in text and "Traceback (most recent call last)" in text, text
        assert "training diverged at step 1" in text and "lower the learning rate (lr=1e+06)" in text, text
        assert 'influence/train.py", line' in text, text  # the full traceback, down to the raise in the library


def test_an_exception_before_setup_lands_in_the_log_too(tmp_path):
    """A script that fails importing (before it calls setup) still writes the exception into its job's log."""
    log = tmp_path / "logs" / "job.log"
    script = tmp_path / "script.py"
    script.write_text(
        "import sys\n"
        "from types import SimpleNamespace\n"
        f"snakemake = SimpleNamespace(log=[{str(log)!r}], rule='job', threads=1)\n"
        f"sys.path.insert(0, {str(REPO / 'experiments' / 'scripts')!r})\n"
        "from wfio import setup\n"
        "import no_such_module_for_the_test\n"
        "setup(snakemake)\n"
    )
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert res.returncode == 1, res.stderr
    text = log.read_text()
    assert "ModuleNotFoundError" in text and "no_such_module_for_the_test" in text and "Traceback" in text, text
    assert "ModuleNotFoundError" in res.stderr  # and on stderr, as before
