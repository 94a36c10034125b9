"""Saving report figures: PNG always, PDF on request, no stale PDF left beside a new PNG."""

import matplotlib.pyplot as plt

from miffi.report import figures


def line_figure():
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1, 2], [0, 1, 4])
    return fig


def test_pdf_only_on_request_and_never_stale(tmp_path):
    png = figures.save(line_figure(), tmp_path, "curve", pdf=True)
    assert png.startswith(b"\x89PNG") and (tmp_path / "curve.png").read_bytes() == png
    assert (tmp_path / "curve.pdf").read_bytes().startswith(b"%PDF")

    figures.save_all({"curve": line_figure()}, tmp_path)
    assert (tmp_path / "curve.png").read_bytes().startswith(b"\x89PNG")
    assert not (tmp_path / "curve.pdf").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curve.png"]  # no temporary files left
