"""``hpc-seaice evaluate``: compare samples with a split; metrics, report and figures."""

from __future__ import annotations

import argparse
from pathlib import Path


def run_evaluate(args: argparse.Namespace) -> int:
    """Evaluate, then one line naming what was scored and where the report is."""
    from hpc_seaice.cli.options import options_for
    from hpc_seaice.evaluation.evaluate import evaluate
    from hpc_seaice.evaluation.roles import parse_findings
    from hpc_seaice.outputs import check_output_dir

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
