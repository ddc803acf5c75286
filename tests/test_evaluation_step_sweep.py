"""The step-sweep table: sample files lined up by run and checkpoint, one row per step count."""

from __future__ import annotations

from hpc_seaice.evaluation.step_sweep import sweep_table


def _model(run: str, step: int, steps: int, crps: float) -> dict:
    return {
        "attrs": {"run": run, "checkpoint_step": step, "steps": steps, "network_evaluations_per_sample": 2 * steps - 1},
        "variables": {"sit": {"crps": crps}},
        "psd_sit_band_log10_ratio": {},
        "cover_calibration": {"error": 0.0, "unweighted_error": 0.0, "partial_error": 0.0},
        "miz_area_wasserstein_km2": 0.0,
    }


def test_runs_with_one_folder_name_are_not_mixed():
    models = {
        "a10": _model("/exp1/ldm", 5, 10, 1.0),
        "a20": _model("/exp1/ldm", 5, 20, 2.0),
        "b10": _model("/exp2/ldm", 5, 10, 3.0),
        "b40": _model("/exp2/ldm", 5, 40, 4.0),
        "c10": _model("/exp3/ddm", 5, 10, 5.0),
        "c20": _model("/exp3/ddm", 7, 20, 6.0),  # another checkpoint: not a sweep
    }
    table = sweep_table(models)
    assert set(table) == {"/exp1/ldm @ step 5", "/exp2/ldm @ step 5"}
    assert [r["model"] for r in table["/exp1/ldm @ step 5"]] == ["a10", "a20"]
    assert [(r["steps"], r["crps"]["sit"]) for r in table["/exp2/ldm @ step 5"]] == [(10, 3.0), (40, 4.0)]
    # one run of that name: the folder name is enough
    del models["b10"], models["b40"]
    assert list(sweep_table(models)) == ["ldm @ step 5"]
