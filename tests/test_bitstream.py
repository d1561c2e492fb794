"""The payload bytes are defined by docs/bitstream.md and the bundle's integer tables alone."""
from __future__ import annotations

import json
from importlib.metadata import version
import shutil
from pathlib import Path

import constriction
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ndsc.bundle import BundleError, load_bundle, write_manifest
from ndsc.bundles import BUNDLES_DIR
from ndsc.entropy import ChannelTable, EntropyCodingError, LatentCoder, quantise_pmf
from tests import bitstream_reference as spec

VECTORS = json.loads((Path(__file__).resolve().parents[1] / "docs" / "bitstream" / "vectors.json").read_text())


def _tables(vector: dict) -> list[ChannelTable]:
    return [ChannelTable(t["offset"], tuple(t["freqs"])) for t in vector["tables"]]


def _spec_tables(tables: list[ChannelTable]) -> list[tuple[int, tuple[int, ...]]]:
    return [(t.offset, t.freqs) for t in tables]


def test_the_reference_vectors_cover_both_versions_escapes_and_multi_word_payloads():
    vectors = VECTORS["vectors"]
    assert {v["version"] for v in vectors} == {1, 2}
    assert any(len(v["payload_hex"]) > 64 for v in vectors)
    assert any(max(map(max, v["symbols"])) > t["offset"] + len(t["freqs"]) - 2
               for v in vectors for t in v["tables"][:1] if v["length"])


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: f"v{v['version']}-{v['name']}")
def test_the_coder_writes_and_reads_the_reference_vectors_byte_for_byte(vector):
    coder = LatentCoder(_tables(vector), vector["version"])
    symbols = np.array(vector["symbols"], dtype=np.int64).reshape(len(vector["tables"]), vector["length"])
    assert coder.encode(symbols).hex() == vector["payload_hex"]
    assert coder.decode(bytes.fromhex(vector["payload_hex"]), vector["length"]).tolist() == symbols.tolist()


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: f"v{v['version']}-{v['name']}")
def test_an_independent_implementation_of_the_spec_writes_and_reads_the_reference_vectors(vector):
    tables = [(t["offset"], t["freqs"]) for t in vector["tables"]]
    payload = bytes.fromhex(vector["payload_hex"])
    assert spec.encode(tables, vector["symbols"], vector["version"]) == payload
    assert spec.decode(tables, payload, vector["length"], vector["version"]) == vector["symbols"]


@st.composite
def _tables_and_symbols(draw):
    m = draw(st.integers(1, 3))
    tables = []
    for _ in range(m):
        k = draw(st.integers(1, 40))
        pmf = np.array(draw(st.lists(st.floats(0.0, 1.0), min_size=k, max_size=k)))
        escape = draw(st.sampled_from([0.0, 1e-9, 1e-3, 0.2]))
        tables.append(ChannelTable(draw(st.integers(-50, 50)), quantise_pmf(pmf + 1e-6, escape)))
    length = draw(st.integers(0, 120))
    rows = []
    for t in tables:
        inside = st.integers(t.low, t.high)
        outside = st.integers(-(1 << 23) + 2, (1 << 23) - 1).map(lambda d, t=t: t.high + d if d > 0 else t.low + d - 1)
        rows.append(draw(st.lists(st.one_of(inside, inside, inside, outside), min_size=length, max_size=length)))
    return tables, rows, length


@settings(max_examples=150, deadline=None)
@given(_tables_and_symbols(), st.sampled_from([1, 2]))
def test_the_spec_and_the_library_write_the_same_bytes_for_any_tables_and_symbols(case, version):
    tables, rows, length = case
    symbols = np.array(rows, dtype=np.int64).reshape(len(tables), length)
    payload = LatentCoder(tables, version).encode(symbols)
    assert spec.encode(_spec_tables(tables), rows, version) == payload
    assert spec.decode(_spec_tables(tables), payload, length, version) == rows


def _weights_inside_the_coder(model) -> list[int]:
    """The cumulative weights the constriction model really codes with, read back by decoding.

    Decoding quantile q from state (K << 24) | q leaves K * w + q - c: two values of K give
    the symbol's weight w and cumulative c; the next symbol starts at c + w.
    """
    cumulative, q = [0], 0
    while q < 1 << 24:
        after = []
        for k in (1 << 8, 1 << 9):
            state = (k << 24) | q
            ans = constriction.stream.stack.AnsCoder(np.array([state & 0xFFFFFFFF, state >> 32], dtype=np.uint32))
            symbol = int(ans.decode(model, 1)[0])
            words = ans.get_compressed().tolist()
            after.append(sum(w << (32 * i) for i, w in enumerate(words)))
        assert symbol == len(cumulative) - 1
        w = (after[1] - after[0]) >> 8
        c = q - (after[0] - (1 << 8) * w)
        assert c == cumulative[-1]
        q = c + w
        cumulative.append(q)
    return cumulative


def _shipped_tables() -> list[ChannelTable]:
    return [t for name in ("ecg-12lead", "ecg-synth-quick") for s in load_bundle(BUNDLES_DIR / name).sources
            for t in s.tables]


def test_version_2_codes_with_exactly_the_tables_integers_and_version_1_with_the_documented_requantisation():
    rng = np.random.default_rng(7)
    tables = _shipped_tables()[::3] + [ChannelTable(0, quantise_pmf(rng.random(k) ** 4, 1e-4)) for k in (1, 2, 500, 3000)]
    for table in tables:
        for coder_version in (1, 2):
            model = LatentCoder([table], coder_version)._models[0]
            assert _weights_inside_the_coder(model) == spec.cumulative(table.freqs, coder_version)
    # the two versions really differ: version 1 is not the table
    assert spec.cumulative(tables[0].freqs, 1) != spec.cumulative(tables[0].freqs, 2)


def test_every_shipped_bundle_is_written_by_the_spec_in_its_own_version():
    rng = np.random.default_rng(3)
    for name in ("ecg-12lead", "ecg-synth-quick"):
        bundle = load_bundle(BUNDLES_DIR / name)
        for source in bundle.sources:
            tables = _spec_tables(list(source.tables))
            symbols = np.round(rng.normal(0, 3, size=(len(tables), 64))).astype(np.int64)
            payload = source.coder().encode(symbols)
            assert spec.encode(tables, symbols.tolist(), bundle.bitstream) == payload
            assert spec.encode(tables, symbols.tolist(), 3 - bundle.bitstream) != payload  # the version matters


def test_a_payload_with_a_trailing_zero_byte_is_not_a_payload():
    coder = LatentCoder([ChannelTable(-1, (16384, 32768, 16383, 1))])
    payload = coder.encode(np.array([[0, 1, 0, -1, 1]]))
    assert payload[-1] != 0
    with pytest.raises(EntropyCodingError, match="zero byte"):
        coder.decode(payload + b"\x00", 5)
    with pytest.raises(ValueError, match="zero byte"):
        spec.decode([(-1, (16384, 32768, 16383, 1))], payload + b"\x00", 5)


def test_an_unknown_bitstream_version_is_refused_by_the_coder():
    with pytest.raises(EntropyCodingError, match="unknown bitstream version 3"):
        LatentCoder([ChannelTable(-1, (16384, 32768, 16383, 1))], 3)


# --- the version in the bundle -----------------------------------------------------------

def _rewrite(path: Path, edit) -> None:
    """Edit a manifest and give it its new content id, as an export of that content would."""
    from ndsc.bundle import _content_id

    manifest = json.loads((path / "manifest.json").read_text())
    edit(manifest)
    manifest["bundle_id"] = _content_id(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_an_exported_bundle_records_bitstream_version_2_and_the_coder(gaussian_bundle):
    manifest = json.loads((gaussian_bundle / "manifest.json").read_text())
    assert manifest["format"] == "ndsc-bundle/2"
    assert manifest["bitstream"] == {"version": 2, "coder": f"constriction=={version('constriction')}"}
    bundle = load_bundle(gaussian_bundle)
    assert bundle.bitstream == 2 and all(s.coder().bitstream == 2 for s in bundle.sources)


def test_a_bundle_without_a_bitstream_record_keeps_the_old_coder_and_stays_format_1_when_rewritten(
        gaussian_bundle, tmp_path):
    import dataclasses

    copy = shutil.copytree(gaussian_bundle, tmp_path / "b")
    b = load_bundle(copy)
    old = [dataclasses.replace(s, bitstream=1) for s in b.sources]  # as written before the record existed
    write_manifest(copy, modality=b.modality, sources=old, decoder=b.decoder, sample_rate=b.sample_rate,
                   training_config=b.training_config, evaluation=b.evaluation, extra=b.extra)
    manifest = json.loads((copy / "manifest.json").read_text())
    assert manifest["format"] == "ndsc-bundle/1" and "bitstream" not in manifest

    legacy = load_bundle(copy)
    assert legacy.bitstream == 1 and all(s.coder().bitstream == 1 for s in legacy.sources)
    symbols = np.zeros((len(b.sources[0].tables), 8), dtype=np.int64) + np.arange(-4, 4)
    payload = legacy.sources[0].coder().encode(symbols)
    assert payload == spec.encode(_spec_tables(list(b.sources[0].tables)), symbols.tolist(), 1)
    assert payload != b.sources[0].coder().encode(symbols)

    # rewriting it (as attach_evaluation does) keeps format 1: same content, same id
    write_manifest(copy, modality=legacy.modality, sources=legacy.sources, decoder=legacy.decoder,
                   sample_rate=legacy.sample_rate, training_config=legacy.training_config,
                   evaluation=legacy.evaluation, extra=legacy.extra)
    assert load_bundle(copy).bundle_id == legacy.bundle_id


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["bitstream"].update(version=3), "bitstream version 3 is not one"),
    (lambda m: m.pop("bitstream"), "bitstream version None"),
    (lambda m: m["bitstream"].update(version="2"), "bitstream version '2'"),
    (lambda m: m.update(format="ndsc-bundle/1"), "has no bitstream record"),
    (lambda m: m.update(format="ndsc-bundle/9"), "unknown bundle format"),
])
def test_a_bundle_with_an_unknown_or_inconsistent_bitstream_record_is_refused(gaussian_bundle, tmp_path, edit, message):
    copy = shutil.copytree(gaussian_bundle, tmp_path / "b")
    _rewrite(copy, edit)
    with pytest.raises(BundleError, match=message):
        load_bundle(copy)


def test_every_operating_point_of_a_variable_rate_source_codes_in_the_bundles_bitstream():
    import dataclasses

    from ndsc.bundle import QualityPoint

    fixed = load_bundle(BUNDLES_DIR / "ecg-synth-quick").sources[0]
    points = tuple(QualityPoint(name, tuple([g] * len(fixed.tables)), fixed.tables) for name, g in (("1", 0.5), ("2", 1.0)))
    for bitstream in (1, 2):
        source = dataclasses.replace(fixed, quality_points=points, default_quality="2", bitstream=bitstream)
        assert {source.coder(q).bitstream for q in (None, "1", "2")} == {bitstream}


def test_sources_with_different_bitstream_versions_cannot_share_a_bundle(gaussian_bundle, tmp_path):
    import dataclasses

    copy = shutil.copytree(gaussian_bundle, tmp_path / "b")
    b = load_bundle(copy)
    mixed = [b.sources[0], dataclasses.replace(b.sources[1], bitstream=1)]
    with pytest.raises(BundleError, match="one known bitstream version"):
        write_manifest(copy, modality=b.modality, sources=mixed, decoder=b.decoder)
