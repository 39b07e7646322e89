"""Copy the experiments' summary table from experiments/results/results.json into the README.

    python tools/readme_results.py            # rewrite the block between the two markers in README.md
    python tools/readme_results.py --check    # exit 1 if the README's block is not what results.json gives

`minibert experiments report` writes results.json (and RESULTS.md, whose "Summary" is the same table); this
keeps the README's copy from going stale. tests/minibert_adapters/test_experiments.py runs the check.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's minibert_adapters, not another installed one
BEGIN = "<!-- results-summary: written by tools/readme_results.py from experiments/results/results.json -->"
END = "<!-- /results-summary -->"


def expected_block(results_path: Path) -> str:
    from minibert_adapters.experiments.report import summary_table

    results = json.loads(results_path.read_text(encoding="utf-8"))
    return "\n".join([BEGIN, *summary_table(results), END])


def current_block(readme: str, name: str = "README.md") -> str:
    """The README's block, markers included; ValueError if the markers are missing or out of order."""
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{name}: the markers {BEGIN!r} ... {END!r} are missing or out of order")
    return readme[start:end + len(END)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if the README is stale")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--results", type=Path, default=ROOT / "experiments" / "results" / "results.json")
    args = parser.parse_args(argv)
    try:
        readme = args.readme.read_text(encoding="utf-8")
        old = current_block(readme, str(args.readme))
        new = expected_block(args.results)
    except (OSError, ValueError, KeyError, TypeError) as e:  # json.JSONDecodeError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.check:
        if old != new:
            print(f"{args.readme}: the results summary differs from {args.results}; run tools/readme_results.py",
                  file=sys.stderr)
            return 1
        return 0
    args.readme.write_text(readme.replace(old, new), encoding="utf-8")
    print(f"wrote the results summary into {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
