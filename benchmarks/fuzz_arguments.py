"""Fuzz every architecture's and wrapper's constructor arguments with invalid values; report the totals.

    PYTHONPATH=$PWD python benchmarks/fuzz_arguments.py [--details] [--only Unet,DDPM]

Each case builds one model on the meta device (nothing allocated) with one argument set to nonsense (wrong type,
negative, NaN/Inf, huge, wrong-length tuple, unknown name; see tests/base/fuzz_cases.py). Outcomes: ``clear``
(ValueError/TypeError naming the argument), ``internal`` (anything else, or an error not naming the argument)
and ``accepted`` (the nonsense was silently accepted). Exits 1 when any case is not ``clear``.
"""
import argparse
import collections
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "base"))

import fuzz_cases  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--details", action="store_true", help="print every case that is not a clear error")
    parser.add_argument("--only", default="", help="comma-separated class names (default: all)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    names = [n for n in fuzz_cases.BASE if not args.only or n in args.only.split(",")]
    totals: collections.Counter = collections.Counter()
    per_class = {}
    start = time.perf_counter()
    for name in names:
        counts: collections.Counter = collections.Counter()
        for argument, category, value in fuzz_cases.cases(name):
            outcome, detail = fuzz_cases.classify(name, argument, value)
            counts[outcome] += 1
            if outcome != "clear" and args.details:
                print(f"  {outcome:8s} {name}({argument}={value!r}) [{category}]: {detail}")
        per_class[name] = counts
        totals.update(counts)
    print(f"{'class':18s} {'tried':>6s} {'clear':>6s} {'internal':>9s} {'accepted':>9s}")
    for name, counts in per_class.items():
        print(f"{name:18s} {sum(counts.values()):6d} {counts['clear']:6d} {counts['internal']:9d} "
              f"{counts['accepted']:9d}")
    tried = sum(totals.values())
    print(f"{'TOTAL':18s} {tried:6d} {totals['clear']:6d} {totals['internal']:9d} {totals['accepted']:9d}"
          f"   ({time.perf_counter() - start:.0f} s)")
    return 0 if totals["clear"] == tried else 1


if __name__ == "__main__":
    raise SystemExit(main())
