"""Code tokens, duplicate detection and the deterministic dedup token."""

from __future__ import annotations

import json

import pytest

from genrec.data import (codes_to_json, count_duplicates, duplicate_groups, format_code, load_codes,
                         make_codes_unique, parse_code)


def test_format_and_parse_round_trip():
    assert format_code([12, 7, 0, 255], "text") == ("<a_12>", "<b_7>", "<c_0>", "<d_255>")
    assert format_code([1, 2], "image") == ("<A_1>", "<B_2>")
    assert parse_code(("<A_1>", "<B_2>")) == (1, 2)
    with pytest.raises(ValueError, match="malformed code token"):
        parse_code(["<a_1", "<b_2>"])
    with pytest.raises(ValueError, match="unknown modality"):
        format_code([1], "audio")


def test_duplicate_groups_and_counts():
    codes = [("<a_1>", "<b_1>"), ("<a_2>", "<b_1>"), ("<a_1>", "<b_1>"), ("<a_2>", "<b_1>"), ("<a_1>", "<b_1>"),
             ("<a_3>", "<b_0>")]
    assert duplicate_groups(codes) == [[0, 2, 4], [1, 3]]
    assert count_duplicates(codes) == 5


def test_make_codes_unique_is_deterministic_and_unique():
    codes = [("<a_1>", "<b_1>"), ("<a_2>", "<b_1>"), ("<a_1>", "<b_1>"), ("<a_3>", "<b_0>"), ("<a_1>", "<b_1>")]
    unique, n_dup = make_codes_unique(codes)
    assert n_dup == 3
    assert unique == [("<a_1>", "<b_1>", "<c_0>"), ("<a_2>", "<b_1>", "<c_0>"), ("<a_1>", "<b_1>", "<c_1>"),
                      ("<a_3>", "<b_0>", "<c_0>"), ("<a_1>", "<b_1>", "<c_2>")]
    assert len(set(unique)) == len(unique)
    assert make_codes_unique(list(codes)) == (unique, n_dup)  # same input, same output
    assert codes[0] == ("<a_1>", "<b_1>")  # the input is not modified


def test_make_codes_unique_on_four_level_codes_uses_fifth_letter():
    text = [format_code([1, 2, 3, 4], "text")] * 3 + [format_code([0, 0, 0, 0], "text")]
    unique, n = make_codes_unique(text)
    assert n == 3 and [c[4] for c in unique] == ["<e_0>", "<e_1>", "<e_2>", "<e_0>"]
    image = [format_code([1, 2, 3, 4], "image")] * 2
    assert [c[4] for c in make_codes_unique(image)[0]] == ["<E_0>", "<E_1>"]


def test_make_codes_unique_needs_a_free_level_letter():
    full = [format_code([1] * 8, "text")] * 2
    with pytest.raises(ValueError, match="no level letter is left"):
        make_codes_unique(full)


def test_unique_codes_are_returned_unchanged():
    codes = [format_code([i, 0, 0, 0], "text") for i in range(5)]
    assert make_codes_unique(codes) == (codes, 0)


def test_unique_codes_survive_a_json_round_trip(tmp_path):
    codes = [format_code([1, 2, 3, 4], "text")] * 4
    unique, _ = make_codes_unique(codes)
    path = tmp_path / "u.json"
    path.write_text(json.dumps(codes_to_json(unique)))
    loaded = load_codes(path, 4)
    assert loaded == unique and count_duplicates(loaded) == 0
