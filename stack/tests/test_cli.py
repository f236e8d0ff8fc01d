import subprocess
import sys
from pathlib import Path

import pytest

from lookout.stack.cli import parser
from lookout.stack.settings_table import render_into, rows

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("argv", [[], ["up"], ["keys"], ["keys", "create"], ["migrate"], ["settings"]])
def test_every_subcommand_has_help(argv, capsys):
    with pytest.raises(SystemExit) as done:
        parser().parse_args([*argv, "--help"])
    assert done.value.code == 0
    assert "usage: lookout" in capsys.readouterr().out


def test_the_lookout_command_is_installed_and_explains_itself():
    out = subprocess.run([sys.executable, "-m", "lookout.stack.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "up" in out.stdout and "keys" in out.stdout


def test_a_bad_option_is_a_friendly_error_not_a_traceback():
    out = subprocess.run([sys.executable, "-m", "lookout.stack.cli", "up", "--port", "many"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "invalid int value" in out.stderr and "Traceback" not in out.stderr


def test_the_readme_settings_table_is_the_generated_one():
    readme = (ROOT / "README.md").read_text()
    assert render_into(readme) == readme, "run: .venv/bin/python -m lookout.stack.settings_table README.md"
    names = [r[0] for r in rows()]
    assert "LOOKOUT_KAFKA_BOOTSTRAP" in names and "LOOKOUT_PII_MODE" in names
    assert len(names) == len(set(names))
