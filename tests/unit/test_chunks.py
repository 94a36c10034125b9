"""Chunks: the first split by id, and later micrographs filling one chunk."""

from __future__ import annotations

import pandas as pd
import pytest

from miffi.intake.chunks import FILL, assign_chunks, chunk_of, chunk_path, previous_chunks, write_chunks


def table(ids) -> pd.DataFrame:
    return pd.DataFrame({"micrograph": list(ids), "path": [f"/data/{m}.mrc" for m in ids]})


def ids(n: int, start: int = 0) -> list[str]:
    return [f"FoilHole_{i:05d}_Data" for i in range(start, start + n)]


def split(folder, micrographs, chunks: int) -> pd.DataFrame:
    """What ``miffi intake --chunks --chunk-dir folder`` writes."""
    chunked = assign_chunks(table(micrographs), chunks, previous_chunks(folder, chunks))
    write_chunks(chunked, chunks, folder)
    return chunked


def test_the_first_split_is_by_id_and_balanced(tmp_path):
    chunked = split(tmp_path, ids(400), 4)
    assert list(chunked.columns[:2]) == ["micrograph", "chunk"]
    assert chunked["chunk"].tolist() == [chunk_of(m, 4) for m in ids(400)]
    assert chunked["chunk"].value_counts().between(70, 130).all()
    assert previous_chunks(tmp_path, 4) == dict(zip(chunked["micrograph"], chunked["chunk"], strict=True))


def test_new_micrographs_change_one_chunk_and_move_no_other(tmp_path):
    first = split(tmp_path, ids(40), 4)
    before = {c: chunk_path(tmp_path, c).stat().st_mtime_ns for c in range(4)}
    texts = {c: chunk_path(tmp_path, c).read_text() for c in range(4)}
    smallest = int(first["chunk"].value_counts().reindex(range(4), fill_value=0).idxmin())
    second = split(tmp_path, ids(42), 4).set_index("micrograph")["chunk"]
    assert (second[ids(40)] == first.set_index("micrograph")["chunk"]).all()  # nothing moved
    assert set(second[ids(2, 40)]) == {smallest}  # the new ones together, in the smallest chunk
    changed = {c for c in range(4) if chunk_path(tmp_path, c).read_text() != texts[c]}
    assert changed == {smallest}
    assert all(chunk_path(tmp_path, c).stat().st_mtime_ns == before[c] for c in range(4) if c != smallest)


def test_a_large_batch_fills_chunks_up_to_the_cap_in_turn(tmp_path):
    """Forty new micrographs beside 4 × 10: the two smallest chunks fill to 1.5 × the mean
    (30), none of the old micrographs moves, and no chunk passes the cap."""
    previous = {m: i % 4 for i, m in enumerate(ids(40))}
    chunked = assign_chunks(table(ids(80)), 4, previous)
    sizes = chunked["chunk"].value_counts().sort_index().tolist()
    assert FILL == 1.5 and sizes == [30, 30, 10, 10]
    assert chunked.set_index("micrograph")["chunk"][ids(40)].tolist() == [i % 4 for i in range(40)]


def test_removed_micrographs_leave_room_that_new_ones_fill():
    previous = {m: i % 3 for i, m in enumerate(ids(30))}
    kept = [m for i, m in enumerate(ids(30)) if i % 3 != 1 or i < 15]  # chunk 1 loses five
    chunked = assign_chunks(table([*kept, *ids(3, 100)]), 3, previous).set_index("micrograph")["chunk"]
    assert set(chunked[ids(3, 100)]) == {1}


@pytest.mark.parametrize("before, after", [(4, 3), (4, 6)])
def test_another_number_of_chunks_splits_afresh(tmp_path, before, after):
    split(tmp_path, ids(40), before)
    assert previous_chunks(tmp_path, after) == {}
    chunked = split(tmp_path, ids(40), after)
    assert chunked["chunk"].tolist() == [chunk_of(m, after) for m in ids(40)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(chunk_path(tmp_path, c).name for c in range(after))
    assert previous_chunks(tmp_path, after) == dict(zip(chunked["micrograph"], chunked["chunk"], strict=True))


def test_a_chunk_table_that_is_not_one_splits_afresh(tmp_path, caplog):
    split(tmp_path, ids(12), 2)
    chunk_path(tmp_path, 1).write_text("not\ta chunk table\n")
    assert previous_chunks(tmp_path, 2) == {}
    assert "not a chunk table" in caplog.text


def test_an_input_with_none_of_the_previous_micrographs_splits_by_id(tmp_path):
    split(tmp_path, ids(20), 4)
    chunked = split(tmp_path, ids(20, 500), 4)
    assert chunked["chunk"].tolist() == [chunk_of(m, 4) for m in ids(20, 500)]


def test_chunk_numbers_of_another_count_count_as_new(tmp_path):
    chunked = assign_chunks(table(ids(10)), 2, {m: 5 for m in ids(10)[:5]} | {m: 0 for m in ids(10)[5:]})
    assert set(chunked["chunk"]) <= {0, 1} and (chunked["chunk"][:5] == 1).all()
    split(tmp_path, ids(10), 2)
    (tmp_path / "chunk_01.micrographs.tsv").write_text("micrograph\tpath\nstray\t/x.mrc\n")  # not a chunk table name
    assert "stray" not in previous_chunks(tmp_path, 2)
