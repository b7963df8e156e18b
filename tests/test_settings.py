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
    assert settings.context_turns == 3 and settings.model_path == "saved_model"
    assert load({"TOP_K": "5"}).sampling_overrides("chat")["top_k"] == 5
    assert load({"TOAST_MAX_NEW_TOKENS": "90"}).sampling_overrides("toast") == {"max_new_tokens": 90}


def test_the_model_card_is_the_chat_default() -> None:
    assert (
        Sampling(
            max_new_tokens=40, temperature=1.2, top_k=10, top_p=0.95, repetition_penalty=1.2, no_repeat_ngram_size=2
        )
        == MODEL_CARD
    )


def test_values_are_parsed_to_their_types() -> None:
    settings = load({"ADMIN_CHAT_ID": "1, -100200", "WORKERS": "2", "TEMPERATURE": "0.7", "DEVICE": "CUDA:1"})
    assert settings.admin_chat_id == (1, -100200)
    assert settings.workers == 2 and settings.temperature == 0.7 and settings.device == "cuda:1"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WORKERS", "many"),
        ("WORKERS", "0"),
        ("TEMPERATURE", "-1"),
        ("TOP_P", "1.5"),
        ("ADMIN_CHAT_ID", "me"),
        ("DEVICE", "gpu"),
        ("DTYPE", "int8"),
        ("CONTEXT_TURNS", "3.5"),
        ("TELEGRAM_API_BASE", "localhost"),
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
    assert (settings.model_path, settings.top_k, settings.workers) == ("from-config", 7, 2)


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


def test_the_readme_lists_every_setting() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [f.name.upper() for f in fields(Settings) if f"`{f.name.upper()}`" not in readme]
    assert missing == []
