"""Errors the chat layer answers with a polite text instead of a reply (no torch, no aiogram here)."""


class EmptyMessageError(ValueError):
    """Nothing was left of the user's text once special tokens and invisible characters were removed."""


class BusyError(RuntimeError):
    """The generation queue is full (MAX_PENDING); the user should try again shortly."""


class ReplyTimeoutError(TimeoutError):
    """Generation ran past GENERATION_TIMEOUT and was stopped inside the worker."""


class ChatFloodError(BusyError):
    """The chat already has CHAT_QUEUE_LIMIT messages waiting for their replies."""
