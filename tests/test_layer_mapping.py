import pytest

from hf_distill.layer_mapping import (
    parse_layer_list,
    pkd_last_map,
    pkd_layer_map,
    pkd_skip_map,
    uniform_map,
    validate_layer_map,
)


@pytest.mark.parametrize(
    "n, m, expected",
    [(12, 6, [2, 4, 6, 8, 10]), (12, 3, [4, 8]), (6, 3, [2, 4]), (6, 2, [3])],
)
def test_pkd_skip_matches_paper(n, m, expected):
    layer_map = pkd_skip_map(n, m)
    assert [t for _, t in layer_map] == expected
    assert [s for s, _ in layer_map] == list(range(1, m))


@pytest.mark.parametrize("n, m, expected", [(12, 6, [7, 8, 9, 10, 11]), (12, 3, [10, 11]), (6, 3, [4, 5])])
def test_pkd_last_matches_paper(n, m, expected):
    assert [t for _, t in pkd_last_map(n, m)] == expected


def test_uniform_map_includes_embeddings_and_last_layer():
    assert uniform_map(12, 4) == [(0, 0), (1, 3), (2, 6), (3, 9), (4, 12)]
    assert uniform_map(6, 3) == [(0, 0), (1, 2), (2, 4), (3, 6)]


def test_skip_and_uniform_need_divisible_depths():
    with pytest.raises(ValueError, match="multiple of the student depth"):
        pkd_skip_map(6, 4)
    with pytest.raises(ValueError, match="tinybert_layer_map"):
        uniform_map(6, 4)


def test_explicit_pkd_map_and_errors():
    assert pkd_layer_map("skip", 6, 3, teacher_layers=[1, 5]) == [(1, 1), (2, 5)]
    with pytest.raises(ValueError, match="teacher layer 9.*6 layers"):
        pkd_layer_map("skip", 6, 3, teacher_layers=[2, 9])
    with pytest.raises(ValueError, match="lists 1 teacher layers"):
        pkd_layer_map("skip", 6, 3, teacher_layers=[2])
    with pytest.raises(ValueError, match="student layer 4.*3 layers"):
        validate_layer_map([(4, 2)], 3, 6, "tinybert_layer_map")
    with pytest.raises(ValueError, match="pkd_strategy"):
        pkd_layer_map("middle", 6, 3)


def test_parse_layer_list():
    assert parse_layer_list("2, 4", "x") == [2, 4]
    assert parse_layer_list([1, 3], "x") == [1, 3]
    assert parse_layer_list("", "x") is None
    with pytest.raises(ValueError, match="`pkd_layer_map`.*'two'"):
        parse_layer_list("two", "pkd_layer_map")
