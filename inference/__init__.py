"""The model side: dialogue format, batching, device choice and the generation backends (no aiogram here)."""
