"""The paper's studies as one sweep: K x EBSD fraction x pattern x model x PL corruption x seed on
held-out test volumes, compared in MLflow, with a results report and a verdict per claim.

    from ebsdray.experiments import run_sweep
    summary = run_sweep(config)          # a resolved configs/sweep.yaml (jobs/sweep.py)

Layers: :mod:`.plan` (which configurations), :mod:`.measure` (metrics at every K from prefixes of
one sample set), :mod:`.runner` (done-records, restart, the loop), :mod:`.tracking` (MLflow
parent and child runs), :mod:`.report` with :mod:`.claims`, :mod:`.views`, :mod:`.stats` and
:mod:`.plots` (the Markdown report and its figures), :mod:`.volumes` (the held-out test volumes).
"""

from ebsdray.experiments.plan import Config, expand_plan
from ebsdray.experiments.runner import run_sweep
from ebsdray.experiments.volumes import TEST_VOLUMES, held_out_volume, load_volume

__all__ = ["TEST_VOLUMES", "Config", "expand_plan", "held_out_volume", "load_volume", "run_sweep"]
