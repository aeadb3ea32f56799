"""`make run` entry point: honest about what is not available."""

from cat_jax import cli


def test_quickstart_says_not_available(capsys):
    assert cli.main(["quickstart"]) == 3
    assert "not available yet" in capsys.readouterr().err


def test_unknown_command_shows_usage(capsys):
    assert cli.main(["train"]) == 2
    assert "usage" in capsys.readouterr().err
