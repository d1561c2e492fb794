"""The bit-exact part of binning (ndsc/binning.py) and the bundle record (format ndsc-bundle/3)."""
from __future__ import annotations

import json
import zlib
from dataclasses import replace

import numpy as np
import pytest

from ndsc.binning import (
    PlanePlan,
    SyndromeError,
    SyndromeSpec,
    decode_order,
    pack_bits,
    plane_check,
    random_checks,
    transmission_order,
    unpack_bits,
)
from ndsc.bundle import BINNING_BUNDLE_FORMAT, BundleError, BundleModified, load_bundle

#: docs/bitstream.md §7's reference vector: n = 16, B = 3 (offset −4), planes raw / syndrome (5 bits) / skip
REFERENCE_CHECKS = ((4, 5, 14), (6, 10, 12), (8, 11, 15), (2, 6, 12), (1, 5, 10), (7, 9, 13), (3, 7, 14),
                    (4, 8, 14), (3, 5, 10), (8, 9, 13), (2, 11, 15), (0, 4, 7), (0, 6, 15), (0, 1, 13),
                    (9, 11, 12), (1, 2, 3))
REFERENCE_SYMBOLS = [3, -4, 0, 2, -1, 1, -3, -2, 2, 0, -4, 3, 1, -1, -2, -3]


def reference_spec() -> SyndromeSpec:
    return SyndromeSpec((0,), -4, 3, (PlanePlan(0, "raw"), PlanePlan(1, "syndrome", 5), PlanePlan(2, "skip")),
                        REFERENCE_CHECKS, 4, 2, 20, {"kind": "table", "side_offset": 0, "probs": [[1] * 8]})


def test_reference_vector_of_the_bitstream_doc():
    spec = reference_spec()
    planes = spec.planes_of(np.array(REFERENCE_SYMBOLS))
    assert transmission_order(16).tolist() == [15, 7, 3, 11, 1, 9, 5, 13, 0, 8, 4, 12, 2, 10, 6, 14]
    assert spec.accumulated(planes[1]).tolist() == [0, 0, 0, 0, 0, 0, 1, 0, 1, 1, 0, 1, 0, 0, 1, 0]
    assert spec.initial_payload(planes).hex() == "8e1d10"
    assert pack_bits(spec.sent_bits(planes[1], 5, 9)).hex() == "80"
    assert random_checks(16, 3, 0) == REFERENCE_CHECKS  # the export's generator, for the record
    assert "check_bits" not in spec.to_json()  # records without the check keep their bytes (and bundle ids)


def test_reference_vector_with_a_plane_check():
    """docs/bitstream.md §7's second vector: the first one with ``check_bits`` 16: plane 1 packs to 9996,
    whose CRC-16/XMODEM 410c follows the 5 accumulated bits, MSB first (so not byte-aligned); CRC-32 for 32."""
    spec = replace(reference_spec(), check_bits=16)
    planes = spec.planes_of(np.array(REFERENCE_SYMBOLS))
    assert pack_bits(planes[1]).hex() == "9996"
    assert plane_check(planes[1], 16) == 0x410C and plane_check(planes[1], 32) == 0xF83615DD
    assert plane_check(np.unpackbits(np.frombuffer(b"123456789", np.uint8)), 16) == 0x31C3  # the catalogue's check
    assert plane_check(np.unpackbits(np.frombuffer(b"123456789", np.uint8)), 32) == zlib.crc32(b"123456789")
    payload = spec.initial_payload(planes)
    assert payload.hex() == "8e1d120860" and spec.initial_bits == 16 + 5 + 16
    parts = spec.split_payload(payload)
    assert parts.checks == {1: 0x410C} and parts[1].tolist() == [0, 0, 0, 1, 0] and len(parts[0]) == 16
    assert pack_bits(spec.sent_bits(planes[1], 5, 9)).hex() == "80"  # requested bits carry no check
    assert spec.mismatched_planes(np.array(REFERENCE_SYMBOLS), parts.checks) == []
    wrong = np.array(REFERENCE_SYMBOLS)
    wrong[0] -= 2  # index 7 → 5: plane 1 flips
    assert spec.mismatched_planes(wrong, parts.checks) == [1]
    assert SyndromeSpec.from_json(spec.to_json()) == spec and spec.to_json()["check_bits"] == 16
    with pytest.raises(SyndromeError):
        plane_check(planes[1], 12)  # only the two CRCs are defined


@pytest.mark.parametrize("n", [1, 2, 12, 16, 100, 1024])
def test_transmission_order_is_a_permutation_whose_prefixes_split_rows_evenly(n):
    order = transmission_order(n)
    assert sorted(order.tolist()) == list(range(n)) and order[0] == n - 1
    for m in (2, 4, 8, 16):
        if m <= n and n % m == 0 and (m & (m - 1)) == 0 and (n & (n - 1)) == 0:
            blocks = np.diff(np.concatenate([[-1], np.sort(order[:m])]))
            assert blocks.min() == blocks.max() == n // m  # power-of-two prefixes: equal blocks


def test_merged_code_checks_are_the_sums_of_their_rows_so_every_rate_is_nested():
    rng = np.random.default_rng(3)
    n = 200
    spec = SyndromeSpec((0,), 0, 1, (PlanePlan(0, "syndrome", 10),), random_checks(n, 3, 1), 8, 4, 20,
                        {"kind": "table", "side_offset": 0, "probs": [[1, 1]]})
    for _ in range(5):
        bits = rng.integers(0, 2, n).astype(np.uint8)
        sent = spec.accumulated(bits)[spec.order]
        for received in (1, 7, 50, 133, n):
            positions, chk, var = spec.merged_code(received)
            direct = np.bincount(chk, weights=bits[var], minlength=received).astype(int) % 2
            assert direct.tolist() == spec.merged_syndrome(sent, received).tolist()


def test_payload_split_refuses_a_wrong_length_or_padding():
    spec = reference_spec()
    payload = spec.initial_payload(spec.planes_of(np.array(REFERENCE_SYMBOLS)))
    parts = spec.split_payload(payload)
    assert sorted(parts) == [0, 1] and len(parts[0]) == 16 and len(parts[1]) == 5
    with pytest.raises(SyndromeError):
        spec.split_payload(payload[:-1])
    with pytest.raises(SyndromeError):
        spec.split_payload(payload[:-1] + bytes([payload[-1] | 1]))
    assert unpack_bits(b"\xa0", 3).tolist() == [1, 0, 1]


def test_a_binning_record_that_does_not_fit_is_refused():
    good = reference_spec().to_json()
    SyndromeSpec.from_json(good)
    for change in ({"conditional": {"kind": "table", "side_offset": 0, "probs": [[1] * 7]}},
                   {"conditional": {"kind": "table", "side_offset": 0, "probs": [[-1] + [1] * 7]}},
                   {"conditional": {"kind": "mlp"}},
                   {"planes": good["planes"][:2]},
                   {"code": {**good["code"], "checks": [[0, 16]] + good["code"]["checks"][1:]}},
                   {"code": {**good["code"], "order": "random"}},
                   {"step_bits": 0},
                   {"check_bits": 12},
                   {"check_bits": 64}):
        with pytest.raises(SyndromeError):
            SyndromeSpec.from_json({**good, **change})


def test_decode_order_puts_side_sources_first_and_refuses_cycles():
    assert decode_order(["syndrome", "direct", "syndrome"], [(1,), (), (1,)]) == [1, 0, 2]
    with pytest.raises(SyndromeError):
        decode_order(["syndrome", "syndrome"], [(1,), (0,)])


def test_binning_bundle_is_format_3_and_refuses_edits(binning_bundle, gaussian_bundle, tmp_path):
    b = load_bundle(binning_bundle)
    manifest = json.loads((binning_bundle / "manifest.json").read_text())
    assert manifest["format"] == BINNING_BUNDLE_FORMAT and manifest["decode_order"] == [0, 1]
    assert [s.coding for s in b.sources] == ["direct", "syndrome"] and b.decode_order == [0, 1]
    assert b.sources[1].binning.side_sources == (0,)
    old = load_bundle(gaussian_bundle)  # format 2, no coding field: every source direct
    assert not old.binning and all(s.coding == "direct" and s.binning is None for s in old.sources)
    assert "coding" not in json.loads((gaussian_bundle / "manifest.json").read_text())["sources"][0]
    manifest["sources"][1]["binning"]["code"]["checks"][0] = [0, 0]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleModified):  # any edit changes the content id
        load_bundle(tmp_path, verify_files=False)
    with pytest.raises(BundleError):
        from ndsc.bundle import SourceInfo

        SourceInfo.from_json(manifest["sources"][1])


def test_export_best_of_keeps_the_training_seed_furthest_below_the_bound_on_validation_windows(tmp_path):
    """Restarts are judged on validation windows by real coded bits, and the bundle written is the kept one."""
    from training.binning import export_best_of

    out, rows = export_best_of(tmp_path / "best", 2, method="neural-sw", samples=512, n_windows=40, lmbda=0.14,
                               steps=60, batch=1024)
    assert [r["train_seed"] for r in rows] == [0, 1]
    kept = [r for r in rows if r.get("chosen")]
    assert len(kept) == 1 and kept[0]["margin"] == max(r["margin"] for r in rows)
    for r in rows:
        assert r["margin"] == pytest.approx(r["no_binning_bound"] - r["val_bits_per_pair"])
        assert 0 < r["val_d"] < 1 and r["val_bits_per_pair"] > 0
    b = load_bundle(out)
    assert b.sources[1].coding == "syndrome"
    assert json.loads((out / "manifest.json").read_text())["training_config"]["train_seed"] == kept[0]["train_seed"]
