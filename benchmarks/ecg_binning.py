"""Would syndrome coding (binning) pay for any node of the shipped 12-lead ECG codec? An upper bound, measured.

For the shipped ``ecg-12lead`` bundle, at every quality point: the bits each node's direct
payload costs on the test records (real ANS bytes × 8), and the cross-entropy of its symbols
under a conditional table p(q_j | q_i) (per latent channel, given another node's symbol at the
same channel and position) fitted on training records: the rate an ideal Slepian–Wolf code with
that conditional model would need. Real LDPC-accumulate codes need more (``benchmarks/binning.py``
measures their overhead on Gaussian sources), so a node wins with binning only if its saving
here clearly exceeds that overhead.

    python benchmarks/ecg_binning.py [--records 30] [--fit-records 60] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def cross_entropy_bits(target: np.ndarray, side: np.ndarray | None, fit_target: np.ndarray,
                       fit_side: np.ndarray | None, alpha: float = 1.0) -> float:
    """Bits to code ``target`` (W, M, L) with a per-channel table fitted on ``fit_target``: p(t) (``side``
    None) or p(t | s) for the side symbol at the same channel and position, smoothed towards p(t) with
    ``alpha`` pseudo-counts. Fitted on other windows than it scores, so it is a rate a decoder could reach."""
    bits = 0.0
    for c in range(target.shape[1]):
        t, ft = target[:, c].reshape(-1), fit_target[:, c].reshape(-1)
        lo, hi = min(t.min(), ft.min()), max(t.max(), ft.max())
        k = hi - lo + 1
        marg = (np.bincount(ft - lo, minlength=k) + 0.5) / (len(ft) + 0.5 * k)
        if side is None:
            bits -= float(np.log2(marg[t - lo]).sum())
            continue
        s, fs = side[:, c].reshape(-1), fit_side[:, c].reshape(-1)
        slo = min(s.min(), fs.min())
        ks = max(s.max(), fs.max()) - slo + 1
        joint = np.zeros((ks, k))
        np.add.at(joint, (fs - slo, ft - lo), 1.0)
        cond = (joint + alpha * marg[None, :]) / (joint.sum(1, keepdims=True) + alpha)
        bits -= float(np.log2(cond[s - slo, t - lo]).sum())
    return bits


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default=str(REPO / "ndsc" / "bundles" / "ecg-12lead"))
    ap.add_argument("--records", type=int, default=30, help="test records scored (the bundle lists 30)")
    ap.add_argument("--fit-records", type=int, default=60, help="training records the tables are fitted on")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    from edge_encoder.encoder import EdgeEncoder
    from ndsc.bundle import load_bundle
    from training.ecg_eval import record_windows

    b = load_bundle(args.bundle)
    info = b.extra["data_info"]
    def load(names: list[str]) -> np.ndarray:
        return np.concatenate([record_windows(str((REPO / r).resolve()), info["leads"], info["group_size"],
                                              b.sample_rate, b.sources[0].input_shape[1]) for r in names])

    windows = load(info["records"]["test"][: args.records])
    fit = load(info["records"]["train"][: args.fit_records])
    n = b.n_sources
    rows = []
    for q in b.quality_names:
        encoders = [EdgeEncoder(b, i, quality=q) for i in range(n)]
        symbols = [np.stack([e.symbols(x[i]) for x in windows]) for i, e in enumerate(encoders)]  # (W, M, L)
        fitted = [np.stack([e.symbols(x[i]) for x in fit]) for i, e in enumerate(encoders)]
        direct = [sum(8 * len(e.coder.encode(s)) for s in symbols[i]) for i, e in enumerate(encoders)]
        for j in range(n):
            if direct[j] == 0:
                continue
            alone = cross_entropy_bits(symbols[j], None, fitted[j], None)
            for i in range(n):
                if i == j:
                    continue
                h = cross_entropy_bits(symbols[j], symbols[i], fitted[j], fitted[i])
                rows.append({"quality": q, "node": b.sources[j].name, "side": b.sources[i].name,
                             "direct_bits_per_window": direct[j] / len(windows),
                             "table_bits_per_window": alone / len(windows),
                             "conditional_bits_per_window": h / len(windows),
                             "saving_vs_direct": 1.0 - h / direct[j]})
    print(f"{len(windows)} test windows ({args.records} records), tables fitted on {len(fit)} training windows "
          f"({args.fit_records} records); bits per window of node j: direct (real ANS bytes), a fitted table "
          f"p(q_j), a fitted conditional table p(q_j | q_i)")
    print(f"{'q':>2} {'node':>12} {'side':>12} {'direct':>8} {'p(j)':>8} {'p(j|i)':>8} {'saving':>7}")
    for r in rows:
        print(f"{r['quality']:>2} {r['node']:>12} {r['side']:>12} {r['direct_bits_per_window']:8.1f} "
              f"{r['table_bits_per_window']:8.1f} {r['conditional_bits_per_window']:8.1f} "
              f"{100 * r['saving_vs_direct']:6.1f}%")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
