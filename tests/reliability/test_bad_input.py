"""Named bad inputs, each through the real CLI: a clear error naming file and field, the
right exit code, no traceback, and nothing written outside the assets, the index, the
repo's state folder and the cache (every file of the test's folder is compared)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from invariants import TALLY

GOOD = 'prompt = "calm pad"\nduration = 1.0\nseed = 3\n'


def snapshot(top: Path) -> dict[str, tuple[int, int]]:
    files = {}
    for dirpath, _dirs, names in os.walk(top):
        for name in names:
            path = Path(dirpath) / name
            st = path.lstat()
            files[str(path.relative_to(top))] = (st.st_size, st.st_mtime_ns)
    return files


def changed_outside(repo, before: dict) -> list[str]:
    """Files created or changed anywhere under the test's folder except where trackspec may write."""
    top = repo.root.parent
    allowed = ("game/assets/", "game/.trackspec/", "cache/", "imports-")
    after = snapshot(top)
    return sorted(p for p, st in after.items() if before.get(p) != st and not p.startswith(allowed))


def build_with(repo, *args: str, rc: int, needles: tuple[str, ...]) -> str:
    before = snapshot(repo.root.parent)
    result = repo.run("build", *args)
    TALLY.input()
    text = result.stdout + result.stderr
    assert result.returncode == rc, text
    assert "Traceback" not in text, text
    for needle in needles:
        assert needle in text, f"{needle!r} not in:\n{text}"
    assert changed_outside(repo, before) == []
    return text


def spec_case(repo, text: str | bytes, field: str, name: str = "bad", rc: int = 1) -> str:
    path = repo.root / "track_specs" / f"{name}.trackspec"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return build_with(repo, rc=rc, needles=(f"track_specs/{name}.trackspec", field))


def test_empty_file(repo):
    spec_case(repo, b"", "prompt: missing required field")


def test_non_utf8_bytes(repo):
    spec_case(repo, b'prompt = "caf\xe9 \xff\xfe"\nduration = 1.0\n', "not valid UTF-8")


class EdgeRepo:
    """A game repo for a module-scoped build (``game_repo`` is per test)."""

    def __init__(self, root: Path, model: Path):
        self.root = root
        (root / "track_specs").mkdir(parents=True)
        (root / "trackspec.toml").write_text('specs = ["track_specs"]\n')
        self.env = {
            **os.environ,
            "TRACKSPEC_CACHE_DIR": str(root.parent / "cache"),
            "TRACKSPEC_MODEL": str(model),
            "PYTHONPATH": str(Path(__file__).parents[2]),
            "HF_HUB_OFFLINE": "1",
        }

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "importer", *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    def index(self) -> dict:
        return json.loads((self.root / "assets/music/index.json").read_text())


@pytest.fixture(scope="module")
def good_edge_cases(tmp_path_factory, tiny_model):
    """One real build of the inputs that are odd but valid (they generate: one model load)."""
    repo = EdgeRepo(tmp_path_factory.mktemp("edge") / "game", tiny_model)
    (repo.root / "track_specs/bom.trackspec").write_bytes(b"\xef\xbb\xbf" + GOOD.encode())
    (repo.root / "track_specs/nok.trackspec").write_text(GOOD + "[generation]\ntop_k = 0\n")
    text = build_with(repo, rc=0, needles=("bom", "nok"))
    return repo, text


def test_utf8_bom_builds(good_edge_cases):
    repo, _ = good_edge_cases
    assert (repo.root / "assets/music/synthwave/bom.ogg").is_file()
    assert repo.index()["tracks"]["bom"]["spec"] == "track_specs/bom.trackspec"


def test_ten_megabyte_prompt(repo):
    spec_case(repo, 'prompt = "' + "la " * (10 * 2**20 // 3) + '"\n', "prompt: ")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1.0", "0", "1e300", "-0.0"])
def test_bad_duration(repo, value):
    spec_case(repo, f'prompt = "x"\nduration = {value}\n', "duration: ")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-0.5", "1e300"])
def test_bad_temperature(repo, value):
    spec_case(repo, f'prompt = "x"\n[generation]\ntemperature = {value}\n', "generation.temperature: ")


def test_top_k_zero_builds_and_samples_from_the_whole_distribution(good_edge_cases, tiny_model):
    """``top_k = 0`` means "no top-k filter": the build's audio is what the backend makes with
    top_k = 0, which is what it makes when every token may be drawn (top_k = vocabulary
    size), and not what a real filter makes (top_k = 1) from the same seed."""
    import dataclasses

    import numpy as np

    from importer.cache import LocalCache
    from importer.generate.base import GenerationRequest
    from importer.generation import load_backend

    repo, _ = good_edge_cases
    entry = repo.index()["tracks"]["nok"]
    assert (repo.root / entry["files"]["ogg"]["path"]).is_file()
    raw = LocalCache(repo.root.parent / "cache").get("raw", entry["keys"]["generation"])
    info, inputs = raw.info, raw.info["inputs"]
    assert inputs["top_k"] == 0 and inputs["prompt"] == "calm pad" and inputs["seed"] == 3
    built = np.fromfile(raw.files["audio.f32"], dtype="<f4").reshape(info["channels"], info["samples"])
    assert built.shape == (1, 32000) and np.isfinite(built).all() and built.std() > 0

    backend = load_backend(str(tiny_model), None, "cpu")
    try:
        vocabulary = int(backend.model.decoder.config.vocab_size)
        request = GenerationRequest(
            name="nok",
            prompt=inputs["prompt"],
            duration=inputs["duration"],
            seed=inputs["seed"],
            temperature=inputs["temperature"],
            top_k=0,
            top_p=inputs["top_p"],
            guidance_scale=inputs["guidance_scale"],
        )
        direct, unfiltered, top1 = backend.generate(
            [request, dataclasses.replace(request, top_k=vocabulary), dataclasses.replace(request, top_k=1)]
        )
    finally:
        backend.close()
    assert np.array_equal(built, direct)
    assert np.array_equal(direct, unfiltered)
    assert not np.array_equal(direct, top1)


@pytest.mark.parametrize(
    "name",
    [
        "../escape",
        "a/b",
        "a\\b",
        "/abs",
        "..",
        "Upper",
        "mus\u00efque",
        "con",
        "nul",
        "aux",
        "prn",
        "com1",
        "lpt9",
        "con.ogg",
        "",
    ],
)
@pytest.mark.parametrize("field", ["name", "genre"])
def test_bad_names(repo, name, field):
    spec_case(repo, GOOD + f'{field} = "{name}"\n'.replace("\\", "\\\\"), f"{field}: ")


@pytest.mark.parametrize("stem", ["CON", "nul", "Upper", "caf\u00e9"])
def test_bad_file_names(repo, stem):
    spec_case(repo, GOOD, "name: ", name=stem)


def test_spec_symlink_outside_repo(repo, tmp_path):
    outside = tmp_path / "elsewhere.trackspec"
    outside.write_text(GOOD)
    (repo.root / "track_specs/linked.trackspec").symlink_to(outside)
    spec_case_text = build_with(repo, rc=1, needles=("track_specs/linked.trackspec", "outside the game repo"))
    assert "Traceback" not in spec_case_text
    assert not (repo.root / "assets/music/synthwave/linked.ogg").exists()


@pytest.mark.parametrize(
    "setting", ['assets = "../outside"', 'assets = "/tmp"', 'index = "../index.json"', 'specs = ["../../"]']
)
def test_paths_escaping_the_repo(repo, setting):
    repo.write_spec("ok", GOOD)
    (repo.root / "trackspec.toml").write_text(
        f'specs = ["track_specs"]\n{setting}\n' if not setting.startswith("specs") else setting + "\n"
    )
    key = setting.split(" ")[0]
    build_with(repo, rc=2, needles=("trackspec.toml", f"{key}: ", "outside the game repo"))


def test_assets_symlink_escaping_the_repo(repo, tmp_path):
    repo.write_spec("ok", GOOD)
    (tmp_path / "outside").mkdir()
    (repo.root / "assets").mkdir()
    (repo.root / "assets/music").symlink_to(tmp_path / "outside")
    build_with(repo, rc=2, needles=("trackspec.toml", "assets: ", "outside the game repo"))
    assert list((tmp_path / "outside").iterdir()) == []


def test_model_directory_that_is_not_a_model(repo):
    not_model = repo.root / "models/empty"
    not_model.mkdir(parents=True)
    (not_model / "README.txt").write_text("not a model")
    repo.env.pop("TRACKSPEC_MODEL")
    spec_case(repo, GOOD + '[generation]\nmodel = "models/empty"\n', "not a loadable MusicGen model directory")


def test_hub_id_while_offline(repo, tmp_path):
    repo.env.pop("TRACKSPEC_MODEL")
    repo.env["HF_HOME"] = str(tmp_path / "hf-empty")  # an empty Hugging Face cache
    text = spec_case(repo, GOOD + '[generation]\nmodel = "facebook/musicgen-small"\n', "cannot download")
    assert "local model directory" in text
