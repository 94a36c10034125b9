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


def test_saved_figures_are_copied_only_when_complete(tmp_path):
    source, target = tmp_path / "evaluation", tmp_path / "report"
    png = figures.save(line_figure(), source, "curve")
    assert figures.copy_saved(source, target, "curve", pdf=True) is None  # no PDF to copy: draw instead
    assert not target.exists()
    target.mkdir()
    (target / "curve.pdf").write_bytes(b"%PDF stale")
    assert figures.copy_saved(source, target, "curve") == png
    assert sorted(p.name for p in target.iterdir()) == ["curve.png"]  # the stale PDF went with the copy
    figures.save(line_figure(), source, "curve", pdf=True)
    assert figures.copy_saved(source, target, "curve", pdf=True) == (source / "curve.png").read_bytes()
    assert (target / "curve.pdf").read_bytes() == (source / "curve.pdf").read_bytes()
    assert figures.copy_saved(source, target, "missing") is None
