from vitdeca.wording import counted


def test_counted_agrees_in_number():
    assert [counted(n, "face") for n in (0, 1, 2)] == ["0 faces", "1 face", "2 faces"]
    assert counted(1, "index", "indices") == "1 index" and counted(4, "index", "indices") == "4 indices"
