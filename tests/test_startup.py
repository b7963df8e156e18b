"""Start-up as a newcomer meets it: --help, the two sides' imports, devices, broken or missing models, quiet logs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from botprocess import ROOT, bot_env, main_command
from conftest import build_tiny_model

from generator import load_models
from inference.backend import ModelLoadError, check_model_path
from inference.transformers_backend import TransformersBackend
from settings import Settings


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter in the project folder, with ``env`` added to the environment."""
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={**bot_env(), **env}, capture_output=True, text=True, timeout=120
    )


def modules_of(package: str) -> list[str]:
    return sorted(f"{package}.{path.stem}" for path in (ROOT / package).glob("*.py") if path.stem != "__init__")


@pytest.mark.parametrize(
    ("modules", "absent"),
    [
        (["handlers", "texts", "errors", *modules_of("bot")], ("torch", "transformers")),
        (["generator", "console", *modules_of("inference")], ("aiogram",)),
    ],
    ids=["the Telegram side loads no torch", "the model side loads no aiogram"],
)
def test_each_side_imports_nothing_of_the_other(modules: list[str], absent: tuple[str, ...]) -> None:
    code = f"import importlib, sys\nfor name in {modules!r}: importlib.import_module(name)\n"
    code += f"print(sorted(name for name in {absent!r} if name in sys.modules))"
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_ctranslate2_bot_whose_conversion_is_made_never_imports_torch(
    answering_model_dir: Path, tmp_path: Path
) -> None:
    """torch is about 220 MB resident: a CTranslate2 bot needs it only for the conversion, once, not at a restart."""
    settings = {"model_path": str(answering_model_dir), "device": "cpu", "db_path": str(tmp_path / "bot.sqlite3")}
    load_models(Settings(**settings))  # converts (this process has torch anyway)
    code = (
        "import sys\n"
        "import app, main\n"
        "from generator import ReplyGenerator, load_models\n"
        "from settings import Settings\n"
        "from store import ChatStore\n"
        f"settings = Settings(**{settings!r})\n"
        "model, tasks = load_models(settings)\n"
        "generator = ReplyGenerator(model, ChatStore(settings.db_path), settings, tasks)\n"
        "generator.warm_up()\n"
        "print(model.summary, '|', generator.tasks['chat'].backend is model, '|', 'torch' in sys.modules)\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ctranslate2, cpu, int8_float32 | True | False"


def test_help_comes_before_the_heavy_imports_and_says_where_settings_go() -> None:
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['main.py', '--help']\n"
        "try:\n"
        f"    runpy.run_path({str(ROOT / 'main.py')!r}, run_name='__main__')\n"
        "except SystemExit as done:\n"
        "    assert done.code == 0\n"
        "print('LOADED', sorted(name for name in ('torch', 'transformers', 'aiogram') if name in sys.modules))"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stdout
    shown = " ".join(result.stdout.split())
    assert "BOT_TOKEN" in shown and ".env" in shown and "config.example.py" in shown and "--console" in shown
    assert str(ROOT) in shown, "where .env and config.py are read from"


# --- devices ---------------------------------------------------------------------------------------------------


def test_a_missing_device_stops_start_up_with_one_line(tmp_path: Path, tiny_model_dir: Path) -> None:
    result = subprocess.run(
        main_command(tmp_path),
        cwd=tmp_path,
        env=bot_env(bot_token="1:x", model_path=tiny_model_dir, db_path=tmp_path / "db.sqlite3", device="cuda:99"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "DEVICE=cuda:99: " in line and ("no CUDA GPU" in line or "this machine has" in line)


# --- models ----------------------------------------------------------------------------------------------------


def test_a_truncated_weights_file_is_named_not_a_traceback(tiny_model_dir: Path, tmp_path: Path) -> None:
    broken = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ModelLoadError, match="weights file is damaged or cut short"):
        TransformersBackend(str(broken), device="cpu")


@pytest.fixture
def hub() -> Iterator[str]:
    """The address of a local stand-in for the model hub that knows no models."""

    class NoModels(BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            self.send_response(404)
            self.send_header("X-Error-Code", "RepoNotFound")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), NoModels)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_missing_folder_that_looks_like_a_hub_id_names_both(hub: str, tmp_path: Path) -> None:
    code = (
        "from inference.backend import check_model_path\n"
        "try:\n"
        "    check_model_path('models/my_chat')\n"
        "except Exception as error:\n"
        "    print(type(error).__name__, error)\n"
    )
    result = run_python(code, HF_ENDPOINT=hub, HF_HUB_CACHE=str(tmp_path / "hub-cache"))
    assert result.stdout.startswith("ModelLoadError "), result.stderr
    assert f"there is no folder {ROOT / 'models' / 'my_chat'}" in result.stdout
    assert "the hub has no model of that name" in result.stdout


def test_offline_a_missing_folder_that_looks_like_a_hub_id_fails_at_once_in_one_line(tmp_path: Path) -> None:
    # Nothing listens on port 9 of this machine: the hub is unreachable, as offline.
    env = bot_env(bot_token="1:x", model_path="models/my_chat", db_path=tmp_path / "db.sqlite3")
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HUB_CACHE=str(tmp_path / "hub-cache"))
    result = subprocess.run(main_command(tmp_path), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert f"there is no folder {tmp_path / 'models' / 'my_chat'}" in line and "the hub could not be reached" in line


def test_an_empty_folder_and_one_without_a_tokenizer_say_what_is_missing(tiny_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError) as caught:
        check_model_path(str(tmp_path))
    assert "it has no tokenizer" in str(caught.value) and "config.json" in str(caught.value)
    no_tokenizer = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    (no_tokenizer / "tokenizer.json").unlink()
    with pytest.raises(ModelLoadError, match=r"it has no tokenizer \(tokenizer.json"):
        check_model_path(str(no_tokenizer))


def test_a_start_with_a_model_made_like_train_py_makes_them_logs_no_warnings(tmp_path: Path) -> None:
    """Sampling values in generation_config.json and ruDialoGPT's clean-up flag used to warn at every start."""
    model = build_tiny_model(tmp_path / "model", n_positions=256)
    generation = json.loads((model / "generation_config.json").read_text())
    generation.update(do_sample=True, temperature=1.2, top_k=10, top_p=0.95, max_new_tokens=40)
    (model / "generation_config.json").write_text(json.dumps(generation))
    tokenizer_config = json.loads((model / "tokenizer_config.json").read_text())
    tokenizer_config["clean_up_tokenization_spaces"] = True
    (model / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    result = subprocess.run(
        main_command(tmp_path, "--console"),
        cwd=tmp_path,
        env=bot_env(model_path=model, db_path=tmp_path / "db.sqlite3"),
        input="привет\nкак дела?\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("бот> ") == 2
    noise = [line for line in result.stderr.splitlines() if " INFO " not in line]
    assert noise == []
