"""``hpc-seaice evaluate``: compare samples with a split, or score a forecast file; metrics, report and figures."""

from __future__ import annotations

import argparse
from pathlib import Path

from hpc_seaice.errors import UserError

# Options of the samples evaluation that mean nothing for a forecast file (and their defaults).
SAMPLES_ONLY = {"samples": [], "reconstruct": [], "step_sweep": None, "findings": None, "max_states": 0}


def run_evaluate(args: argparse.Namespace) -> int:
    """Evaluate, then one line naming what was scored and where the report is."""
    from hpc_seaice.cli.options import options_for
    from hpc_seaice.evaluation.evaluate import evaluate
    from hpc_seaice.evaluation.roles import parse_findings
    from hpc_seaice.outputs import check_output_dir

    if args.forecast is not None:
        return _run_forecast(args)
    if args.out is None:
        raise UserError("evaluate: --out is required (the report's folder)")
    check_output_dir(args.out, "--out")
    roles = parse_findings(args.findings) if args.findings else None
    result = evaluate(**options_for(evaluate, args, findings=roles, n_boot=args.bootstrap))
    out = Path(args.out)
    print(
        f"evaluated {len(result['models'])} model(s) and {len(result['reconstructions'])} reconstruction(s) "
        f"against {result['num_states']} {args.split} states: {out / 'report.md'}",
        flush=True,
    )
    return 0


def _run_forecast(args: argparse.Namespace) -> int:
    from hpc_seaice.cli.options import options_for
    from hpc_seaice.evaluation.forecast import evaluate_forecast
    from hpc_seaice.outputs import check_output_dir

    given = [name for name, default in SAMPLES_ONLY.items() if getattr(args, name) != default]
    if given:
        option = "--" + given[0].replace("_", "-")
        raise UserError(f"evaluate --forecast scores a forecast file alone; drop {option}")
    forecast = Path(args.forecast)
    out = Path(args.out) if args.out is not None else forecast.with_name(f"{forecast.stem}-scores")
    check_output_dir(out, "--out")
    result = evaluate_forecast(**options_for(evaluate_forecast, args, out=out))
    fc = result["forecast"]
    print(
        f"scored forecast {forecast} ({fc['members']} member(s), {fc['num_leads']} lead(s) from "
        f"{fc['reference_time']}) against {args.data}: {out / 'report.md'}",
        flush=True,
    )
    return 0
