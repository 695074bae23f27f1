"""``tokensmith --help`` as a person reads it: the exit-code table keeps one code per line (click rewraps an epilog
into one paragraph unless told not to), and says the same as ``tokensmith help exit-codes``."""

from __future__ import annotations

from pathlib import Path

from cli_harness import Cli


def test_help_shows_the_exit_codes_one_per_line_as_help_exit_codes_does(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    helped = cli.run("--help", env={"COLUMNS": "200"})
    table = cli.run("help", "exit-codes")
    assert helped.returncode == table.returncode == 0

    lines = [line.strip() for line in helped.stdout.splitlines()]
    codes = [line.split()[0] for line in table.stdout.splitlines()[1:] if line.strip()[:1].isdigit()]
    assert codes == ["0", "1", "2", "4", "5", "6", "130"]
    for line in table.stdout.splitlines()[1:]:
        assert line.strip() in lines, f"--help lost the line {line.strip()!r}"
