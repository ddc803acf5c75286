"""The three findings decided on constructed models: broken ones never earn `holds`, good ones do.

One evaluation scores every constructed model (:mod:`verdict_models`, 40 samples each, against 40
test states, with a floor of 40 validation states); the findings are then decided for several
assignments of the roles. A broken model (uniform noise, copies or blurred copies of training
states, a per-cell shuffle of real states) fails a sanity check against the floor, so any finding
involving it is `undecided`; two statistically identical models never "differ"; models built to
satisfy a finding (three fresh draws of the generator; blurred fresh draws as LDMs; a softened
ice edge as the Gaussian LDM) earn `holds`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import verdict_models as V

from hpc_seaice.cli import main
from hpc_seaice.evaluation.evaluate import run_evaluation
from hpc_seaice.evaluation.findings import FAILS, HOLDS, UNDECIDED, Roles, render_findings
from hpc_seaice.evaluation.floor import floor_indices, floor_size

N = 40
BOOT = 500


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    folder = tmp_path_factory.mktemp("verdicts")
    root = folder / "data"
    parts = V.write_data(root)
    rng = np.random.default_rng(10)
    fields = {name: V.states(rng, N) for name in ("good-a", "good-b", "good-c")}
    fields |= {name: V.blur(V.states(rng, N), 1.0) for name in ("smooth-b", "smooth-c")}
    fields["soft-edge"] = V.soft_edge(V.states(rng, N), 0.65)
    fields |= {name: V.noise(rng, N) for name in ("noise-a", "noise-b", "noise-c")}
    fields["copies"] = parts["train"][:N]
    fields["blurred-copies"] = V.blur(parts["train"][:N], 1.0)
    fields["shuffle"] = V.shuffle_cells(rng, parts["train"][:N])
    fields["random-phases"] = V.random_phases(rng, V.states(rng, N))
    return root, {name: V.write_model(folder / f"{name}.nc", f, name) for name, f in fields.items()}


@pytest.fixture(scope="module")
def evaluation(built, tmp_path_factory):
    root, files = built
    out = tmp_path_factory.mktemp("eval")
    return run_evaluation(list(files.values()), str(root), out, progress=False, n_boot=BOOT, figures=False)


def verdicts(evaluation, *roles: str) -> dict[str, str]:
    return {f["id"]: f["verdict"] for f in evaluation.decide(Roles(*roles))}


def test_the_floor_and_good_models_pass_the_sanity_checks(evaluation):
    from hpc_seaice.evaluation.findings import sanity_failures

    metrics = evaluation.metrics
    assert metrics["floor"]["num_samples"] == N and not metrics["floor"]["memorization"]["copies_training"]
    for name in ("good-a", "good-b", "good-c", "smooth-b", "smooth-c"):
        assert sanity_failures(metrics["models"][name], metrics["floor"], evaluation.wavelength_km) == {}, name
    # the blurred fresh draws are closer to the training set than the test states are, as any smooth
    # field is; the train/test distance ratio keeps them from being called copies
    smooth = metrics["models"]["smooth-b"]["memorization"]
    assert smooth["copies_training_by_distance"] and not smooth["copies_training"]
    assert smooth["train_test_ratio"]["p_value"] > 0.05


@pytest.mark.parametrize(
    "name, expected",
    [
        ("noise-a", {"aggregate/extent/wasserstein", "variogram/all", "psd/sit/large_gt400km"}),
        ("shuffle", {"psd/sit/large_gt400km", "psd/siu/large_gt400km"}),
        ("copies", {"memorization"}),
        ("blurred-copies", {"memorization"}),
        ("random-phases", {"variogram/all", "aggregate/miz_area/wasserstein"}),
    ],
)
def test_broken_models_fail_the_checks_against_the_floor(evaluation, name, expected):
    from hpc_seaice.evaluation.findings import sanity_failures

    metrics = evaluation.metrics
    failed = sanity_failures(metrics["models"][name], metrics["floor"], evaluation.wavelength_km)
    assert expected <= set(failed), failed


def test_models_built_for_each_finding_earn_holds(evaluation):
    assert verdicts(evaluation, "good-a", "good-b", "good-c")["competitive"] == HOLDS
    smooth = verdicts(evaluation, "good-a", "smooth-b", "smooth-c")
    assert smooth["smoothing"] == HOLDS and smooth["competitive"] == HOLDS
    assert verdicts(evaluation, "good-a", "good-b", "soft-edge")["censoring_miz"] == HOLDS


@pytest.mark.parametrize(
    "roles, never",
    [
        (("noise-a", "noise-b", "noise-c"), ("competitive", "smoothing", "censoring_miz")),  # CRPS ratios all ~1.0
        (("good-a", "copies", "blurred-copies"), ("competitive", "smoothing", "censoring_miz")),
        (("shuffle", "smooth-b", "smooth-c"), ("smoothing",)),  # a data-space model without spatial structure
        (("noise-a", "smooth-b", "smooth-c"), ("smoothing",)),
        (("good-a", "good-b", "good-c"), ("smoothing", "censoring_miz")),  # statistically identical LDMs
        (("good-a", "smooth-b", "smooth-c"), ("censoring_miz",)),
    ],
)
def test_no_finding_holds_where_it_should_not(evaluation, roles, never):
    got = verdicts(evaluation, *roles)
    for fid in never:
        assert got[fid] != HOLDS, (roles, fid, got)


def test_broken_models_make_their_findings_undecided_with_the_reason(evaluation):
    findings = evaluation.decide(Roles("noise-a", "noise-b", "noise-c"))
    competitive = findings[0]
    assert competitive["verdict"] == UNDECIDED and competitive["verdict_without_sanity"] == HOLDS
    assert "noise-a" in competitive["reason"] and "extent W1" in competitive["reason"]
    ratios = [d["estimate"] for k, d in competitive["numbers"].items() if "/crps/" not in k and "crps/" in k]
    assert np.allclose(ratios, 1.0, atol=0.05)  # the numbers that fooled the old verdict are still shown
    assert verdicts(evaluation, "good-a", "good-b", "good-c")["smoothing"] == FAILS


def test_cli_decides_the_findings_and_reports_them(built, tmp_path):
    root, files = built
    out = tmp_path / "eval"
    roles = f"data-space={files['good-a']},ldm-censored={files['smooth-b']},ldm-gaussian={files['smooth-c']}"
    argv = ["evaluate", "--samples", str(files["good-a"]), "--findings", roles, "--data", str(root)]
    assert main([*argv, "--out", str(out), "--bootstrap", "200"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["models"]) == {"good-a", "smooth-b", "smooth-c"}  # the roles' files were added
    findings = {f["id"]: f for f in metrics["findings"]}
    assert list(findings) == ["competitive", "smoothing", "censoring_miz"]
    assert findings["smoothing"]["verdict"] == HOLDS and findings["smoothing"]["band"] == "small_lt100km"
    for f in findings.values():
        assert f["criterion"] and f["verdict"] in (HOLDS, FAILS, UNDECIDED)
        assert all({"estimate", "low", "high"} <= set(d) for d in f["numbers"].values())
    report = (out / "report.md").read_text()
    assert "## Findings" in report and render_findings(metrics["findings"])[0] in report
    assert metrics["floor"]["num_samples"] == N and "| floor (validation) |" in report
    from hpc_seaice.demo_report import findings_section  # the demo's report renders the same findings

    assert set(render_findings(metrics["findings"])) <= set(findings_section(metrics))


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def test_findings_bad_input_is_a_one_line_error(built, tmp_path, capsys):
    root, files = built
    a, b, c = (str(files[k]) for k in ("good-a", "good-b", "good-c"))
    base = ["evaluate", "--data", str(root), "--out", str(tmp_path / "e"), "--findings"]
    cases = [
        (f"data-space={a},data-space={b},ldm-gaussian={c}", "given twice"),
        (f"data-space={a},ldm-latent={b},ldm-gaussian={c}", "unknown role 'ldm-latent'"),
        (f"data-space={a},ldm-censored={b}", "missing role(s) ldm-gaussian"),
        (f"data-space={a},ldm-censored={tmp_path / 'nope.nc'},ldm-gaussian={c}", "does not exist"),
    ]
    text = tmp_path / "not-samples.nc"
    text.write_text("hello")
    cases.append((f"data-space={a},ldm-censored={text},ldm-gaussian={c}", "is not a samples file"))
    for value, message in cases:
        assert main([*base, value]) == 2, value
        err = _error(capsys)
        assert "--findings" in err and message in err, err
    no_validation = tmp_path / "no-validation"
    V.write_data(no_validation, splits=("train", "test"))
    argv = ["evaluate", "--data", str(no_validation), "--out", str(tmp_path / "e")]
    assert main([*argv, "--findings", f"data-space={a},ldm-censored={b},ldm-gaussian={c}"]) == 2
    err = _error(capsys)
    assert "--findings" in err and "validation" in err


def test_the_floor_draw():
    assert floor_size([16, 64, 32]) == 64 and floor_size([]) == 16
    first = floor_indices(365, 64)
    assert np.array_equal(first, floor_indices(365, 64)) and len(set(first)) == 64  # fixed seed, distinct
    assert np.all(np.diff(first) > 0) and np.array_equal(floor_indices(10, 64), np.arange(10))


def test_a_refined_path_keeps_the_small_scales_only_when_it_does(evaluation):
    """The optional fourth role: a sharp model holds; a smooth one, noise, a shuffle or copies never do."""
    kept = verdicts(evaluation, "good-a", "smooth-b", "smooth-c", "good-b")
    assert kept["small_scales_kept"] == HOLDS and kept["smoothing"] == HOLDS
    assert verdicts(evaluation, "good-a", "smooth-b", "smooth-c", "smooth-c")["small_scales_kept"] == FAILS
    for broken in ("noise-a", "shuffle", "copies", "blurred-copies", "random-phases"):  # noise with real spectra too
        got = verdicts(evaluation, "good-a", "smooth-b", "smooth-c", broken)
        assert got["small_scales_kept"] != HOLDS, (broken, got)
    three = verdicts(evaluation, "good-a", "smooth-b", "smooth-c")
    assert "small_scales_kept" not in three  # only with the fourth role
