import subprocess
import sys

import pytest

from kpose.cli import build_parser
from kpose.recipe import RecipeError, load_recipe, parse_override, recipes


def test_packaged_recipes_resolve():
    names = recipes()
    assert "efficientpose_rt" in names
    for n in names:
        r = load_recipe(n)
        assert r["name"] == n and r["model"]["family"]


def test_unknown_recipe_lists_known():
    with pytest.raises(RecipeError, match="efficientpose_rt"):
        load_recipe("no_such_recipe")


def test_override_typo_names_known_keys():
    with pytest.raises(RecipeError, match="train.epochs"):
        load_recipe("efficientpose_rt", {"train.epoch": 3})
    r = load_recipe("efficientpose_rt", dict([parse_override("train.epochs=3"),
                                              parse_override("model.input_size=[96,96]")]))
    assert r["train"]["epochs"] == 3 and r["model"]["input_size"] == [96, 96]


@pytest.mark.parametrize("cmd", [[], ["train"], ["predict"], ["evaluate"], ["quantize"], ["recipes"]])
def test_help_answers(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(cmd + ["--help"])
    assert e.value.code == 0
    assert "usage: kpose" in capsys.readouterr().out


def test_console_script_lists_recipes():
    out = subprocess.run([sys.executable, "-m", "kpose.cli", "recipes"], capture_output=True,
                         text=True, check=True).stdout
    assert "efficientpose_rt" in out


def test_models_lists_every_family_and_variant(capsys):
    """`kpose models` counts parameters and multiply-adds of every registered builder (at a
    small input: the counts come from shape inference, nothing runs)."""
    from kpose.models import FAMILIES

    args = build_parser().parse_args(["models", "--size", "64", "64"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    for family in FAMILIES.values():
        for variant in family.variants:
            assert any(line.split()[:2] == [family.name, variant] for line in out.splitlines()), (family.name, variant)


def test_cli_errors_usage_user_and_bugs(monkeypatch, capsys):
    import json

    import kpose.cli as cli

    # Usage: options that do not go together exit 2 with argparse's usage line.
    with pytest.raises(SystemExit) as e:
        cli.main(["train"])
    assert e.value.code == 2 and "give a recipe" in capsys.readouterr().err
    # A problem with what kpose was given: one line naming it, exit 1.
    assert cli.main(["train", "no_such_recipe"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("kpose train: error:") and "no_such_recipe" in err and "\n" not in err
    # A ValueError from inside a library is a bug: it keeps its traceback.
    monkeypatch.setattr(cli, "cmd_recipes", lambda a: json.loads("{"))
    with pytest.raises(json.JSONDecodeError):
        cli.main(["recipes"])
