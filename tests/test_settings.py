"""Settings: defaults, parsing, one-line errors, sources, and config.example.py matching the code."""

from __future__ import annotations

import ast
from dataclasses import fields
from pathlib import Path

import pytest

from inference.sampling import MODEL_CARD, Sampling
from settings import ConfigError, Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent


def load(environ: dict[str, str], tmp_path: Path | None = None) -> Settings:
    return load_settings(environ, env_file=None, config_file=None)


def test_sampling_is_left_to_the_model_unless_set() -> None:
    settings = load({})
    assert set(settings.sampling_overrides("chat").values()) == {None}
    assert settings.context_turns == 3
    assert load({"TOP_K": "5"}).sampling_overrides("chat")["top_k"] == 5
    assert load({"TOAST_MAX_NEW_TOKENS": "90"}).sampling_overrides("toast") == {"max_new_tokens": 90}


def test_the_model_card_is_the_chat_default() -> None:
    card = Sampling(
        max_new_tokens=40, temperature=1.2, top_k=10, top_p=0.95, repetition_penalty=1.2, no_repeat_ngram_size=2
    )
    assert card == MODEL_CARD


def test_values_are_parsed_to_their_types() -> None:
    settings = load({"ADMIN_CHAT_ID": "1, -100200", "WORKERS": "2", "TEMPERATURE": "0.7", "DEVICE": "CUDA:1"})
    assert settings.admin_chat_id == (1, -100200)
    assert settings.workers == 2 and settings.temperature == 0.7 and settings.device == "cuda:1"
    assert load({"REPLY_CHANCE": "0.1"}).reply_chance == 0.1 and load({}).reply_chance == 0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WORKERS", "many"),
        ("WORKERS", "0"),
        ("TEMPERATURE", "-1"),
        ("TOP_P", "1.5"),
        ("ADMIN_CHAT_ID", "me"),
        ("DEVICE", "gpu"),
        ("DEVICE", "cuda:abc"),
        ("DTYPE", "int8"),
        ("CONTEXT_TURNS", "3.5"),
        ("TELEGRAM_API_BASE", "localhost"),
        ("REPLY_CHANCE", "1.5"),
        ("REPLY_CHANCE", "10%"),
        ("REPLY_CHANCE", "nan"),
    ],
)
def test_a_bad_value_names_the_setting(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load({name: value})
    message = str(caught.value)
    assert message.startswith(name) and repr(value) in message and "\n" not in message


def test_a_malformed_token_is_refused_without_showing_it() -> None:
    with pytest.raises(ConfigError) as caught:
        load({"BOT_TOKEN": "secret value"})
    assert "BOT_TOKEN" in str(caught.value) and "secret" not in str(caught.value)


def test_environment_beats_dotenv_beats_config_py(tmp_path: Path) -> None:
    (tmp_path / "config.py").write_text('MODEL_PATH = "from-config"\nTOP_K = 5\nWORKERS = 3\n')
    (tmp_path / ".env").write_text("TOP_K=7\nWORKERS=4\n")
    settings = load_settings({"WORKERS": "2"}, env_file=tmp_path / ".env", config_file=tmp_path / "config.py")
    assert (settings.model_path, settings.top_k, settings.workers) == (str(tmp_path / "from-config"), 7, 2)


def test_config_py_with_an_unknown_setting_fails(tmp_path: Path) -> None:
    (tmp_path / "config.py").write_text("TOKEN = 'x'\n")
    with pytest.raises(ConfigError, match="unknown setting TOKEN"):
        load_settings({}, env_file=None, config_file=tmp_path / "config.py")


def test_config_example_documents_every_setting_with_its_default() -> None:
    tree = ast.parse((ROOT / "config.example.py").read_text(encoding="utf-8"))
    documented = {
        node.targets[0].id: ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
    }
    assert set(documented) == {field.name.upper() for field in fields(Settings)}
    example = load_settings({}, env_file=None, config_file=ROOT / "config.example.py")
    assert example == Settings()


def test_default_paths_are_in_the_project_folder_wherever_the_bot_starts(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load({})
    assert Path(settings.model_path) == ROOT / "saved_model"
    assert Path(settings.db_path) == ROOT / "data" / "bot.sqlite3"


def test_home_is_expanded_in_paths(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    settings = load({"DB_PATH": "~/bot.sqlite3", "MODEL_PATH": "~/models/chat", "TOAST_MODEL_PATH": "~/toast"})
    assert settings.db_path == str(tmp_path / "bot.sqlite3")
    assert settings.model_path == str(tmp_path / "models" / "chat")
    assert settings.toast_model_path == str(tmp_path / "toast")


def test_relative_paths_follow_their_source(tmp_path: Path, monkeypatch) -> None:
    """From the environment: the current directory; from .env or config.py: that file's folder."""
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    (project / "my_model").mkdir(parents=True)
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    (project / ".env").write_text("MODEL_PATH=my_model\nDB_PATH=data/bot.sqlite3\nTOAST_MODEL_PATH=owner/toasts\n")
    from_file = load_settings({}, env_file=project / ".env", config_file=None)
    assert from_file.model_path == str(project / "my_model") and from_file.db_path == str(project / "data/bot.sqlite3")
    assert from_file.toast_model_path == "owner/toasts", "a hub id is not a path"
    from_environment = load_settings({"DB_PATH": "data/bot.sqlite3"}, env_file=None, config_file=None)
    assert from_environment.db_path == "data/bot.sqlite3"


def test_a_byte_order_mark_does_not_hide_the_first_line(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("BOT_TOKEN=1:abc\nWORKERS=2\n", encoding="utf-8-sig")
    settings = load_settings({}, env_file=tmp_path / ".env", config_file=None)
    assert settings.bot_token == "1:abc" and settings.workers == 2


def test_a_dotenv_not_in_utf8_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / ".env").write_bytes("TRIGGER_WORD=Тимоха\n".encode("cp1251"))
    with pytest.raises(ConfigError, match=r"\.env is not UTF-8 text.*save it as UTF-8"):
        load_settings({}, env_file=tmp_path / ".env", config_file=None)


@pytest.mark.parametrize("file_name", [".env", "config.py"])
def test_a_misspelt_setting_is_refused_with_the_likely_name(tmp_path: Path, file_name: str) -> None:
    line = "TEMPRATURE=0.9\n" if file_name == ".env" else "TEMPRATURE = 0.9\n"
    (tmp_path / file_name).write_text(line)
    files = {"env_file": tmp_path / ".env", "config_file": tmp_path / "config.py"}
    with pytest.raises(ConfigError) as caught:
        load_settings({}, **files)
    message = str(caught.value)
    assert "unknown setting TEMPRATURE" in message and "did you mean TEMPERATURE?" in message
    assert "\n" not in message


def test_only_settings_files_are_checked_for_unknown_names(tmp_path: Path) -> None:
    # The process environment holds every program's variables; only ours are read from it.
    settings = load_settings({"TEMPRATURE": "0.9", "PATH": "/bin", "WORKERS": "2"}, env_file=None, config_file=None)
    assert settings.workers == 2 and settings.temperature is None


def test_the_readme_lists_every_setting() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [f.name.upper() for f in fields(Settings) if f"`{f.name.upper()}`" not in readme]
    assert missing == []


def test_a_webhook_needs_its_secret_and_an_https_address() -> None:
    with pytest.raises(ConfigError, match="WEBHOOK_SECRET must be set"):
        load({"WEBHOOK_URL": "https://bot.example.com/hook"})
    with pytest.raises(ConfigError, match="https://"):
        load({"WEBHOOK_URL": "http://bot.example.com/hook", "WEBHOOK_SECRET": "abc"})
    with pytest.raises(ConfigError) as caught:
        load({"WEBHOOK_URL": "https://bot.example.com/hook", "WEBHOOK_SECRET": "not a valid secret!"})
    assert "WEBHOOK_SECRET" in str(caught.value) and "not a valid" not in str(caught.value), "never shown"
    settings = load({"WEBHOOK_URL": "https://bot.example.com/hook", "WEBHOOK_SECRET": "abc_DEF-1"})
    assert (settings.webhook_secret, settings.webhook_listen) == ("abc_DEF-1", "0.0.0.0:8080")
    assert load(
        {"WEBHOOK_URL": "http://127.0.0.1:9/h", "WEBHOOK_SECRET": "x", "TELEGRAM_API_BASE": "http://127.0.0.1:8"}
    )
