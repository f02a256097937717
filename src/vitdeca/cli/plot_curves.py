"""``vitdeca plot-curves RUN_DIR... --out curves.png``: training and validation curves of runs in one figure.

Reads each run's ``losses.csv`` and draws one panel per ``--terms`` entry (default ``total`` and
``landmark``; ``shape_mm`` for the validation's neutral-shape error), one colour per run (labelled with the
run folder's name): the training value smoothed with an exponential moving average (``--smooth``, 0 = raw)
as a solid line, the validation value (``val_*`` columns, when the run had ``data.val_manifest``) dashed.
Steps where a term is off (e.g. coarse terms in the detail stage) are gaps.
"""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "plot-curves",
        help="plot the training-loss curves of runs in one figure",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders (or losses.csv files)")
    parser.add_argument("--out", required=True, metavar="PNG", help="image file to write (.png, .pdf, .svg)")
    parser.add_argument("--terms", default="total,landmark", help="comma-separated columns (%(default)s)")
    parser.add_argument("--smooth", type=float, default=0.9, help="EMA factor in [0,1) (%(default)s)")
    parser.add_argument("--log", action="store_true", help="logarithmic loss axis")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from vitdeca.train.plots import plot_curves

    terms = [t.strip() for t in args.terms.split(",") if t.strip()]
    plot_curves(args.runs, args.out, terms=terms, smooth=args.smooth, log_scale=args.log)
    return 0
