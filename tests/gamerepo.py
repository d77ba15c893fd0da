"""The game repo and CLI runner the end-to-end tests share (imported by conftest.py and by
tests that build their own repos; not named conftest, so no other conftest.py shadows it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]

#: Runs the CLI in a fresh interpreter and reports which heavy modules it imported.
_CLI_WRAPPER = textwrap.dedent("""
    import json, os, sys
    from importer.cli import main
    try:
        code = main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
    heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'numpy', 'soxr',
                                                          'boto3', 'botocore', 'obstore', 'ray'})
    with open(os.environ['TRACKSPEC_TEST_IMPORTS'], 'w') as fh:
        json.dump(heavy, fh)
    sys.exit(code)
""")


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str
    imported: list[str]

    def json(self) -> dict:
        return json.loads(self.stdout)


@dataclass
class GameRepo:
    root: Path
    cache: Path
    env: dict

    def write_spec(self, name: str, text: str) -> Path:
        path = self.root / "track_specs" / f"{name}.trackspec"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    def run(self, *args: str, check_rc: int | None = None, timeout: float = 600) -> CliResult:
        imports_file = self.root.parent / f"imports-{os.getpid()}.json"
        env = {**self.env, "TRACKSPEC_TEST_IMPORTS": str(imports_file)}
        proc = subprocess.run(
            [sys.executable, "-c", _CLI_WRAPPER, *args],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        imported = json.loads(imports_file.read_text()) if imports_file.exists() else []
        result = CliResult(proc.returncode, proc.stdout, proc.stderr, imported)
        if check_rc is not None:
            assert proc.returncode == check_rc, f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return result

    def index(self) -> dict:
        return json.loads((self.root / "assets/music/index.json").read_text())
