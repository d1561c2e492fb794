import pytest

from ndsc.bounds import all_bounds

# DESIGN.md's checked figures, bits per sample pair.
FIGURES = [
    (0.9, 0.1, {"separate": 3.32, "no_binning": 2.93, "berger_tung": 2.25, "centralised": 2.12}),
    (0.9, 0.01, {"separate": 6.64, "no_binning": 6.58, "berger_tung": 5.45, "centralised": 5.45}),
    (0.99, 0.1, {"no_binning": 2.52}),
]


@pytest.mark.parametrize("rho,d,expected", FIGURES)
def test_bounds_match_the_design_figures(rho, d, expected):
    got = all_bounds(rho, d)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=0.01), key


@pytest.mark.parametrize("rho", [0.5, 0.9, 0.99])
@pytest.mark.parametrize("d", [0.01, 0.05, 0.2])
def test_bounds_are_ordered(rho, d):
    b = all_bounds(rho, d)
    assert b["centralised"] <= b["berger_tung"] + 1e-9 <= b["no_binning"] + 1e-9 <= b["separate"] + 1e-9


def test_bounds_cli_prints_two_decimals(capsys):
    from app.cli import main

    main(["bounds", "--rho", "0.9", "--distortion", "0.1"])
    out = capsys.readouterr().out
    for figure in ("3.32", "2.93", "2.25", "2.12"):
        assert figure in out
