"""The Telegram side besides handlers.py: commands, access, middlewares, notices, retries, stats (no torch here)."""
