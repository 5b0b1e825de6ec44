"""The ``cdptrack`` command itself: help, and a clear word when an extra is missing."""

from __future__ import annotations

import subprocess
import sys

BLOCK_JSONSCHEMA = (
    "import sys; sys.modules['jsonschema'] = None\n"  # as if the [sink] extra were absent
    "from cdptrack.cli import main; sys.exit(main(sys.argv[1:]))"
)


def run(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                          text=True, timeout=60, check=False)


def test_help_lists_every_contract_command() -> None:
    result = run("from cdptrack.cli import main; import sys; sys.exit(main(['--help']))")
    assert result.returncode == 0
    for name in ("demo", "sink", "render", "send", "replay", "worker", "doctor"):
        assert f"    {name} " in result.stdout


def test_a_missing_extra_is_named_with_the_install_command() -> None:
    result = run(BLOCK_JSONSCHEMA, "sink", "--port", "0")
    assert result.returncode == 2
    assert "pip install 'cdptrack[sink]'" in result.stderr
    assert "Traceback" not in result.stderr
