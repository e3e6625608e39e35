"""python -m fastlinear: plan ahead, or show the configuration.

    python -m fastlinear tune 64,784,256 128,256,10 [--dtypes float32,float64]
    python -m fastlinear config
"""
import argparse
import json
import time

from . import show_config, tune
from ._plans import CLOSE_CALL, is_close_call


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastlinear", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    plan = commands.add_parser("tune", help="measure the plans of these shapes and save them")
    plan.add_argument("shapes", nargs="+", help="N,M_in,M_out of each layer")
    plan.add_argument("--dtypes", default="float32,float64")
    commands.add_parser("config", help="print show_config()")
    args = parser.parse_args(argv)
    if args.command == "config":
        show_config()
        return
    try:
        shapes = [tuple(int(v) for v in s.split(",")) for s in args.shapes]
        if any(len(s) != 3 or min(s) < 0 for s in shapes):
            raise ValueError
    except ValueError:
        parser.error("each shape is N,M_in,M_out, three integers >= 0")
    start = time.perf_counter()
    chosen = tune(shapes, args.dtypes.split(","))
    print(json.dumps(chosen, indent=1))
    # How sure each choice is: the runner-up's time over the chosen plan's.
    close = [key for key, entry in chosen.items() if is_close_call(entry.get("margin"))]
    print(f"{len(close)} of {len(chosen)} choices are close calls (the runner-up within "
          f"{CLOSE_CALL - 1:.0%}): {', '.join(close) or 'none'}")
    print(f"planned in {time.perf_counter() - start:.2f} s")
    show_config()


if __name__ == "__main__":
    main()
