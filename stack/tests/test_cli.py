import os
import subprocess
import sys
from pathlib import Path

import pytest

from lookout.cli.main import parser
from lookout.cli.settings_table import render_into, rows

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("argv", [[], ["up"], ["keys"], ["keys", "create"], ["migrate"], ["settings"]])
def test_every_subcommand_has_help(argv, capsys):
    with pytest.raises(SystemExit) as done:
        parser().parse_args([*argv, "--help"])
    assert done.value.code == 0
    assert "usage: lookout" in capsys.readouterr().out


def test_the_lookout_command_is_installed_and_explains_itself():
    out = subprocess.run([sys.executable, "-m", "lookout.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "up" in out.stdout and "keys" in out.stdout


def test_a_bad_option_is_a_friendly_error_not_a_traceback():
    out = subprocess.run([sys.executable, "-m", "lookout.cli", "up", "--port", "many"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "invalid int value" in out.stderr and "Traceback" not in out.stderr


def test_the_readme_settings_table_is_the_generated_one():
    readme = (ROOT / "README.md").read_text()
    assert render_into(readme) == readme, "run: .venv/bin/lookout settings --write README.md"
    names = [r[0] for r in rows()]
    assert "LOOKOUT_KAFKA_BOOTSTRAP" in names and "LOOKOUT_PII_MODE" in names
    assert len(names) == len(set(names))


def lookout(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lookout.cli", *argv], capture_output=True, text=True,
                          timeout=120)


def test_revoking_an_unknown_key_id_says_so_and_fails(tmp_path):
    made = lookout("keys", "--data-dir", str(tmp_path), "create", "--app", "shop", "--scope", "read")
    assert made.returncode == 0, made.stderr
    key_id = made.stdout.split()[2]
    unknown = lookout("keys", "--data-dir", str(tmp_path), "revoke", "nosuchkey123")
    assert unknown.returncode == 1
    assert "unknown key id 'nosuchkey123'" in unknown.stderr and "revoked" not in unknown.stdout
    known = lookout("keys", "--data-dir", str(tmp_path), "revoke", key_id)
    assert known.returncode == 0 and known.stdout.strip() == f"revoked {key_id}"
    listed = lookout("keys", "--data-dir", str(tmp_path), "list").stdout
    assert key_id in listed and "revoked" in listed


def test_lookout_settings_write_puts_the_table_between_the_markers(tmp_path):
    from lookout.cli.settings_table import END, START

    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\n{START}\nold table\n{END}\n\nafter\n")
    done = lookout("settings", "--write", str(readme))
    assert done.returncode == 0, done.stderr
    text = readme.read_text()
    assert "old table" not in text and "`LOOKOUT_LOG_FORMAT`" in text
    assert text.startswith("# Title\n") and text.endswith("\nafter\n")


def test_lookout_up_without_lookout_stack_names_the_package_to_install(monkeypatch, capsys):
    from lookout.cli import main as cli

    monkeypatch.setattr(cli, "plugins", dict)  # as where lookout-stack is not installed
    assert cli.main(["up", "--demo"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lookout up: `lookout up` comes with lookout-stack, which is not installed here")
    assert "Traceback" not in err


def test_an_unreachable_clickhouse_is_one_line_that_hides_the_password():
    done = subprocess.run([sys.executable, "-m", "lookout.cli", "migrate"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "LOOKOUT_CLICKHOUSE_DSN": "http://ops:hunter2@127.0.0.1:9"})
    assert done.returncode == 1
    assert "lookout migrate: cannot use ClickHouse at http://ops:***@127.0.0.1:9" in done.stderr
    assert "hunter2" not in done.stderr and "Traceback" not in done.stderr


def test_a_piped_lookout_settings_whose_reader_leaves_exits_quietly():
    shell = f"{sys.executable} -m lookout.cli settings | head -1"
    done = subprocess.run(["bash", "-o", "pipefail", "-c", shell], capture_output=True, text=True, timeout=60)
    assert done.stdout.startswith("| variable |")
    assert done.stderr == "" and done.returncode == 0
