"""User errors of the CLI: exit status 2 and one line, before any model is built."""

from __future__ import annotations

import pytest

from vitdeca.cli import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["reconstruct"], "no input"),
        (["reconstruct", "{tmp}/missing.jpg", "--out", "{tmp}/o"], "missing.jpg: no such file"),
        (["reconstruct", "{tmp}/x.jpg", "--save", "objj", "--out", "{tmp}/o"], "unknown output 'objj'"),
        (["reconstruct", "{tmp}/x.jpg", "--out", "{tmp}/x.jpg/sub"], "cannot write"),
        (["fit", "{tmp}/x.jpg", "--out", "{tmp}/o", "--stages", "landmark"], "unknown 'landmark'"),
        (["reconstruct", "{tmp}/x.jpg", "--same-person", "--all-faces"], "drop --all-faces"),
        (["fit", "{tmp}/x.jpg", "--out", "{tmp}/o", "--iterations", "a"], "--iterations 'a'"),
        (
            ["transfer", "--identity", "{tmp}/x.jpg", "--expression", "{tmp}/x.jpg", "--save", "nope"],
            "'nope'",
        ),
    ],
)
def test_user_errors_exit_2(tmp_path, capsys, monkeypatch, argv, message):
    (tmp_path / "x.jpg").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    status = main([a.format(tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("vitdeca: error:") and message in err and len(err.strip().splitlines()) == 1


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit):
        main(["reconstruct", "--help"])
    out = capsys.readouterr().out
    assert "--checkpoint" in out and "--all-faces" in out and "--no-detail" in out and "--demo" in out
