"""Every setting of the bot, with its default.

Set them in the environment, in a `.env` file (same names, `NAME=value` lines, UTF-8), or copy this
file to `config.py` and edit it there. The environment wins over `.env`, which wins over `config.py`.
Both files are read from the project folder (`python main.py --config-dir DIR` reads them from DIR).
A bad value, or a name that is not a setting, stops start-up with one line naming it.

Paths may start with `~` (the home folder). A relative path here is taken from this file's folder;
one in the environment from the current directory.
"""

# --- Telegram -------------------------------------------------------------------------------------
# The token from @BotFather. Empty: `python main.py` explains how to set it and, in a terminal,
# offers the console chat. Keep it out of git: put it in `.env` (ignored) or the environment.
BOT_TOKEN = ""
# Chat ids told when the bot starts and stops, and alerted on errors: one id or "id1,id2".
ADMIN_CHAT_ID = ""
# Only these users / chats may talk to the bot (ids, comma-separated); others get a polite refusal.
# Both empty: everyone may.
ALLOWED_USERS = ""
ALLOWED_CHATS = ""
# In groups the bot answers when @mentioned, when replied to, or when a message starts with this
# word (any case, punctuation after it allowed), e.g. "Тимоха". Empty: mentions and replies only.
TRIGGER_WORD = ""
# In a group, answer a message nobody addressed to the bot with this probability (0 to 1, e.g. 0.1 for about
# one message in ten), as a reply to it; a group's administrators can choose their own in /settings. Above 0
# the group's messages are kept as the context of later answers. Never in private chats, nor for other bots'
# messages, commands or media. The bot sees such messages only when its privacy mode is off (see the README).
REPLY_CHANCE = 0
# Base URL of a Bot API server, e.g. a self-hosted one (http://127.0.0.1:8081). Empty: Telegram's.
TELEGRAM_API_BASE = ""
# Webhook mode: the public https:// address Telegram posts updates to (a reverse proxy in front of the
# bot). Empty: long polling.
WEBHOOK_URL = ""
# Required with WEBHOOK_URL: 1 to 256 of A-Z a-z 0-9 _ -; Telegram sends it back with every post, and
# a post without it is refused (401). Keep it out of git, like the token.
WEBHOOK_SECRET = ""
# Where the bot's own HTTP server listens in webhook mode (it also answers /healthz), "host:port".
WEBHOOK_LISTEN = "0.0.0.0:8080"

# --- The model ------------------------------------------------------------------------------------
# A model directory (what train.py writes) or a hub id such as "tinkoff-ai/ruDialoGPT-small".
# The default is the saved_model folder in the project.
MODEL_PATH = "saved_model"
# The engine that runs the model here: "auto" (CTranslate2 on a CPU, transformers on a GPU),
# "ctranslate2", "transformers", or "openai" for a remote OpenAI-compatible server such as vLLM (then
# MODEL_PATH needs only the tokenizer files). CTranslate2 converts the model once (int8 on a CPU), keeps
# the conversion in a "ct2" folder next to DB_PATH and converts again when the model's files change.
BACKEND = "auto"
# "auto" (CUDA when present, else CPU), "cpu", "cuda", "cuda:N" or "mps".
DEVICE = "auto"
# "auto", "float32", "float16" or "bfloat16". With transformers "auto" is bf16 on CUDA (fp16 on older
# GPUs) and on a CPU that computes bf16 natively (AMX or AVX-512 BF16), fp32 otherwise; with CTranslate2
# it is int8 weights (int8_float16 on CUDA), and a named format keeps the weights in it.
DTYPE = "auto"
# With BACKEND="openai": the server's base URL, e.g. "http://gpu-box:8000/v1"; its API key (if it was
# started with one); the model to ask for (empty: the only one it serves).
INFERENCE_URL = ""
INFERENCE_API_KEY = ""
INFERENCE_MODEL = ""

# --- Serving --------------------------------------------------------------------------------------
# Threads that run generate(); each runs one batch at a time. One is best on a small CPU.
WORKERS = 1
# Most replies generated together in one batched generate() call. None: what was measured best for the
# engine on its device (CTranslate2 on a CPU: 32; transformers on a CPU, and every engine on a GPU: 16).
MAX_BATCH = None
# How long (ms) a request waits for others to share its batch when a worker is free. None: the engine's
# measured default (10 everywhere so far).
BATCH_WINDOW_MS = None
# Replies queued or generating at once; past this a user is told the bot is busy.
MAX_PENDING = 64
# Messages of one chat waiting for their replies; past this the user is asked to wait.
CHAT_QUEUE_LIMIT = 3
# Seconds a generation may run before it is stopped and the user gets an apology.
GENERATION_TIMEOUT = 60
# "auto": in private chats a reply, toast or horoscope shows as a draft that grows while it is written, with a
# button that stops it (the text so far is then sent); groups see "typing…". "off": "typing…" everywhere.
STREAMING = "auto"
# The draft is updated at most this often (ms), by whole words; a reply ready sooner shows no draft. 0: every word.
DRAFT_INTERVAL_MS = 400
# Seconds to let in-flight replies finish after SIGINT/SIGTERM.
SHUTDOWN_TIMEOUT = 30
# Messages received but not answered before a crash or a hurried stop are answered at the next start, as
# replies to the original messages. One older than this many seconds gets a short note that the bot was
# away instead (a generated answer to an hours-old message rarely fits anymore). 0: always answer.
RECOVERY_MAX_AGE = 3600
# SQLite file with each chat's history (created, with its folder, on first start); by default in the
# project's data folder. The bot must be allowed to write to its folder (SQLite keeps its journal there).
DB_PATH = "data/bot.sqlite3"
# Days to keep dialogue turns; older ones are deleted automatically (hourly). 0: keep until /reset or /forget.
HISTORY_TTL_DAYS = 0

# --- Dialogue and sampling ------------------------------------------------------------------------
# Dialogue turns the model sees: the user's message and the ones before it (1..10); a chat can
# choose its own with /context.
CONTEXT_TURNS = 3
# The sampling style of chats that haven't picked one in /settings: "lively" (the values below) or
# "calm" (temperature 0.7, top_p 0.9, repetition_penalty 1.3).
REPLY_STYLE = "lively"
# Chat sampling. None: the chat model's own generation_config.json (train.py writes one), else the
# ruDialoGPT model card's values: 40 new tokens, temperature 1.2, top_k 10, top_p 0.95,
# repetition_penalty 1.2, no_repeat_ngram_size 2. A value set here overrides the model's.
MAX_NEW_TOKENS = None
TEMPERATURE = None
TOP_K = None
TOP_P = None
REPETITION_PENALTY = None
NO_REPEAT_NGRAM_SIZE = None

# --- Toasts and horoscopes ------------------------------------------------------------------------
# A model directory or hub id for /toast and for /horoscope. Empty: the chat model (MODEL_PATH) is
# asked in its own dialogue format ("Скажи тост: день рождения"); a model fine-tuned on toasts or
# horoscopes (python train.py --task toast) does far better. A directory named twice is loaded once.
TOAST_MODEL_PATH = ""
HOROSCOPE_MODEL_PATH = ""
# Longest toast / horoscope, in tokens. None: the model's own generation_config.json, else 120.
TOAST_MAX_NEW_TOKENS = None
HOROSCOPE_MAX_NEW_TOKENS = None

# --- Daily horoscope ------------------------------------------------------------------------------
# The time /daily uses when none is given (and the "Присылать каждый день" button), "HH:MM".
DAILY_TIME = "09:00"
# The time zone of every daily time, an IANA name such as "Europe/Moscow", "Asia/Yekaterinburg" or "UTC".
TIMEZONE = "Europe/Moscow"

# --- Feedback -------------------------------------------------------------------------------------
# 👍/👎 buttons under the bot's replies, kept for the next fine-tune (python export_feedback.py OUT.csv):
# "off", "on" (chat replies) or "all" (toasts and horoscopes too).
FEEDBACK = "off"

# --- Obscene words -------------------------------------------------------------------------------
# What the bot does with Russian мат and vulgar abuse in what it writes (chat replies, toasts, horoscopes,
# the daily horoscope): "allow" sends it as the model wrote it; "mask" keeps each such word's first letter
# and stars the rest (х**); "avoid" asks the model again (at most 3 tries, within GENERATION_TIMEOUT) and
# masks only if every try swore. A chat's administrators can choose otherwise in /settings.
PROFANITY = "allow"
# A UTF-8 text file with words or phrases of your own, one a line (lines starting with # are comments),
# treated like obscene words in every inflection ("Васька" catches "Ваське", "ВАСЬКОЙ"). Empty: none.
BLOCKED_WORDS = ""

# --- Logging --------------------------------------------------------------------------------------
# DEBUG, INFO, WARNING or ERROR.
LOG_LEVEL = "INFO"
