"""Cut the small real GLUE slices that the tests ship (tests/fixtures/glue/), from the full data.

    python tools/make_glue_slices.py [SOURCE]     # SOURCE: the GLUE folder, default $MINIBERT_DATA or ../shared/data

Each slice is the first rows of the original file, byte for byte (the header kept where the file has one),
so every reader sees the real format. tests/fixtures/glue/README.md records where each came from: the
source file's SHA-256 and the number of rows kept. The full files stay outside the repository; the
experiments read them through MINIBERT_DATA.
"""

import hashlib
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "glue"
# folder -> (file, header lines, data rows kept)
SLICES = {
    "SST-2": [("train.tsv", 1, 300), ("dev.tsv", 1, 100)],
    "CoLA": [("train.tsv", 0, 300), ("dev.tsv", 0, 100)],
    "RTE": [("train.tsv", 1, 120), ("dev.tsv", 1, 40)],
    "SST-2-sentences": [("stsa.binary.train", 0, 300), ("stsa.binary.dev", 0, 100)],
}


def main(source: Path) -> None:
    rows = ["| slice | source file | source SHA-256 | header lines | rows kept |", "|---|---|---|---|---|"]
    for folder, files in SLICES.items():
        (OUT / folder).mkdir(parents=True, exist_ok=True)
        for name, header, n in files:
            raw = (source / folder / name).read_bytes()
            lines = raw.split(b"\n")[:header + n]
            (OUT / folder / name).write_bytes(b"\n".join(lines) + b"\n")
            digest = hashlib.sha256(raw).hexdigest()
            rows.append(f"| `{folder}/{name}` | `{folder}/{name}` | `{digest}` | {header} | {n} |")
    readme = OUT / "README.md"
    intro = readme.read_text(encoding="utf-8").split("<!-- table -->")[0] if readme.is_file() else ""
    readme.write_text(intro + "<!-- table -->\n" + "\n".join(rows) + "\n", encoding="utf-8")


if __name__ == "__main__":
    default = os.environ.get("MINIBERT_DATA") or str(ROOT.parent / "shared" / "data")
    main(Path(sys.argv[1] if len(sys.argv) > 1 else default))
