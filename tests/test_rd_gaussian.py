import json

from training.rd_gaussian import run_rd_gaussian


def test_rd_sweep_writes_real_bit_points_and_a_plot(tmp_path):
    png = run_rd_gaussian(tmp_path, lambdas=(0.1,), steps=20, samples=64, n_windows=40, batch_size=4)
    assert png.is_file() and png.stat().st_size > 10_000
    (row,) = json.loads((tmp_path / "results.json").read_text())
    assert row["sum_rate_bits_per_pair"] >= row["table_entropy_bits_per_pair"]  # coder overhead is never negative
    assert row["bounds"]["berger_tung"] < row["bounds"]["separate"]
