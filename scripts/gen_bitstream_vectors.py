#!/usr/bin/env python
"""Write the bitstream reference vectors ``docs/bitstream/vectors.json``.

Usage::

    python scripts/gen_bitstream_vectors.py           # rewrite the file
    python scripts/gen_bitstream_vectors.py --check   # exit 1 if the coder no longer writes these bytes

Each vector is a set of tables, the symbols and the payload ``ndsc.entropy.LatentCoder``
writes for them (docs/bitstream.md). The bytes must never change for a released version:
``--check`` (and tests/test_bitstream.py) fail if they would.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
OUT = REPO / "docs" / "bitstream" / "vectors.json"


def _cases() -> list[dict]:
    import numpy as np

    from ndsc.entropy import quantise_pmf

    small = {"offset": -1, "freqs": [16384, 32768, 16383, 1]}
    five = {"offset": -2, "freqs": [4096, 16384, 24576, 16384, 4095, 1]}
    rng = np.random.default_rng(14)
    x = np.arange(-6, 7)
    wide = {"offset": -6, "freqs": list(quantise_pmf(np.exp(-0.5 * x**2 / 4.0), 1e-3))}
    skew = {"offset": 0, "freqs": list(quantise_pmf(0.5 ** np.arange(8), 1e-2))}
    long_rows = np.clip(np.round(rng.normal(0, 2, size=(2, 200))), -8, 8).astype(int).tolist()
    cases = [
        ("empty window", [small], [[]]),
        ("only the lowest symbol: nothing to write", [small], [[-1, -1, -1]]),
        ("one channel", [five], [[0, 1, -1, 0, 2, -2, 0, 0, 1, -1, 0, 0]]),
        ("escapes: one beyond each edge, far, and the largest magnitude", [five, small],
         # five codes -2..2, small -1..1: deltas +1, -1, +998, -2**22 | +1, -8, +2**23 - 1
         [[3, -3, 0, 1000, -2 - (1 << 22), 0], [2, -9, 0, 1 + (1 << 23) - 1, 1, 0]]),
        ("many words: two channels of 200", [wide, skew], long_rows),
    ]
    out = []
    for version in (2, 1):
        for name, tables, rows in cases:
            out.append({"name": name, "version": version, "tables": tables, "length": len(rows[0]),
                        "symbols": rows})
    return out


def build() -> list[dict]:
    """Every vector with the payload the coder writes today."""
    import numpy as np

    from ndsc.entropy import ChannelTable, LatentCoder

    vectors = []
    for case in _cases():
        tables = [ChannelTable(t["offset"], tuple(t["freqs"])) for t in case["tables"]]
        symbols = np.array(case["symbols"], dtype=np.int64).reshape(len(tables), case["length"])
        payload = LatentCoder(tables, case["version"]).encode(symbols)
        vectors.append({**case, "payload_hex": payload.hex()})
    return vectors


def render(vectors: list[dict]) -> str:
    lines = ",\n".join("  " + json.dumps(v, separators=(", ", ": ")) for v in vectors)
    return ('{"spec": "docs/bitstream.md", "precision": 24, "table_precision": 16,\n'
            f' "vectors": [\n{lines}\n ]}}\n')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the checked-in vectors differ")
    args = parser.parse_args(argv)
    text = render(build())
    if args.check:
        if OUT.read_text() != text:
            print(f"{OUT.relative_to(REPO)}: the coder no longer writes these bytes", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(OUT.relative_to(REPO))
    return 0


if __name__ == "__main__":
    sys.exit(main())
