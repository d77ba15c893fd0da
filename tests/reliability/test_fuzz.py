"""Hypothesis fuzz of the spec and config parsers: generated TOML documents (known fields
with values of every type and range, unknown and misspelt keys, nested tables) and raw
bytes. Property: the parser returns a valid value or raises the input error with the
file (and, for a well-formed TOML document, the field); nothing else, ever. Many
examples run in-process against the real parser functions; a handful go through the CLI
(`trackspec build --check`): no traceback, exit 1 for a bad spec, exit 2 for a bad
trackspec.toml, the message naming file and field."""

from __future__ import annotations

import datetime
import json
import math
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from invariants import TALLY

from importer.config import PROJECT_FIELDS, load_config
from importer.errors import ConfigError, SpecError
from importer.fields import TABLES, TOP_FIELDS
from importer.spec import builtin_defaults, parse_spec

SCALARS = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 0.0, -0.0, 1e308, 2**63 - 1, 30, 44100, 250, 6]),
    st.text(max_size=30),
    st.sampled_from(["", "ogg", "mp3", "wav", "../x", "a/b", "con", "auto", "web", "facebook/musicgen-small"]),
    st.booleans(),
    st.dates(),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text("abcdefgh_", min_size=1, max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
SPEC_KEYS = list(TOP_FIELDS) + ["promt", "durration", "meta", "generation", "output", "x"]
TABLE_KEYS = {t: list(f) + ["tempreature", "bogus"] for t, f in TABLES.items()}
CONFIG_KEYS = list(PROJECT_FIELDS) + ["defaults", "asset", "unknown"]


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string (or a syntax error: also bad input)
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


@st.composite
def spec_documents(draw) -> str:
    lines = []
    if draw(st.booleans()):
        lines.append('prompt = "calm synth"')
    for key in draw(st.lists(st.sampled_from(SPEC_KEYS), max_size=5, unique=True)):
        if key in TABLE_KEYS and draw(st.booleans()):
            continue  # written as a table below
        lines.append(f"{key} = {toml_value(draw(VALUES))}")
    for table, keys in TABLE_KEYS.items():
        if draw(st.booleans()):
            lines.append(f"[{table}]")
            for key in draw(st.lists(st.sampled_from(keys), max_size=4, unique=True)):
                lines.append(f"{key} = {toml_value(draw(VALUES))}")
    return "\n".join(lines) + "\n"


@st.composite
def config_documents(draw) -> str:
    lines = []
    for key in draw(st.lists(st.sampled_from(CONFIG_KEYS), max_size=4, unique=True)):
        if key == "defaults":
            continue
        lines.append(f"{key} = {toml_value(draw(VALUES))}")
    if draw(st.booleans()):
        lines.append("[defaults]")
        for key in draw(st.lists(st.sampled_from(SPEC_KEYS), max_size=3, unique=True)):
            lines.append(f"{key} = {toml_value(draw(VALUES))}")
    return "\n".join(lines) + "\n"


def _well_formed(data: bytes) -> bool:
    try:
        tomllib.loads(data.decode("utf-8-sig"))
        return True
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False


def check_spec(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.trackspec"
        path.write_bytes(data)
        TALLY.input()
        try:
            spec = parse_spec(path, builtin_defaults(), 300.0)
        except SpecError as exc:
            assert str(exc).startswith(str(path)), exc
            if _well_formed(data):
                assert exc.field and f": {exc.field}: " in str(exc), exc
            return
        assert spec.prompt and 0 < spec.duration <= 300 and math.isfinite(spec.temperature)


def check_config(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "trackspec.toml").write_bytes(data)
        TALLY.input()
        try:
            config = load_config(root)
        except ConfigError as exc:
            assert str(exc).startswith(str(root / "trackspec.toml")), exc
            if _well_formed(data):
                assert exc.field and f": {exc.field}: " in str(exc), exc
            return
        assert config.assets_dir.is_relative_to(config.root.resolve())


FUZZ = settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@FUZZ
@given(spec_documents())
def test_fuzz_spec_documents(doc):
    check_spec(doc.encode("utf-8"))


@FUZZ
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_fuzz_spec_bytes(data):
    check_spec(data)


@FUZZ
@given(config_documents())
def test_fuzz_config_documents(doc):
    check_config(doc.encode("utf-8"))


@settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(doc=spec_documents().filter(lambda d: "prompt" not in d or "duration" in d))
def test_fuzz_spec_through_the_cli(game_repo, doc):
    spec = game_repo.root / "track_specs/fuzz.trackspec"
    spec.write_text(doc, encoding="utf-8")
    TALLY.input()
    proc = subprocess.run(
        [sys.executable, "-m", "importer", "build", "--check"],
        cwd=game_repo.root,
        env=game_repo.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode in (0, 1), proc.stderr
    try:
        parse_spec(spec, builtin_defaults(), 300.0)
    except SpecError as exc:
        assert proc.returncode == 1 and "track_specs/fuzz.trackspec" in proc.stdout + proc.stderr
        assert exc.field is None or exc.field in proc.stdout + proc.stderr


@settings(
    max_examples=4,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(doc=config_documents())
def test_fuzz_config_through_the_cli(game_repo, doc):
    (game_repo.root / "trackspec.toml").write_text(doc, encoding="utf-8")
    TALLY.input()
    proc = subprocess.run(
        [sys.executable, "-m", "importer", "build", "--check"],
        cwd=game_repo.root,
        env=game_repo.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    try:
        load_config(game_repo.root)
    except ConfigError as exc:
        assert proc.returncode == 2 and "trackspec.toml" in proc.stderr
        assert exc.field is None or exc.field in proc.stderr
    else:
        assert proc.returncode in (0, 1), proc.stderr
