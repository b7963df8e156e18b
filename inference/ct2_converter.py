"""The converter from transformers to CTranslate2, fitted to ruDialoGPT's tokenizer (imports torch: only to convert)."""

from __future__ import annotations

from collections.abc import Mapping

from ctranslate2.converters import TransformersConverter
from ctranslate2.specs import TransformerDecoderModelSpec


class TrimmedVocabularyConverter(TransformersConverter):
    """The stock converter, with exactly one vocabulary token per row of the model's embedding table.

    The stock one registers the tokenizer's whole vocabulary and refuses a model whose table differs:
    ruDialoGPT-small's saved tokenizer lists ``<|endoftext|>`` as id 50261, one past its 50261 rows
    ("Vocabulary has size 50262 but the model expected a vocabulary of size 50261"). A token past the
    table can neither reach nor leave the model, so it is dropped; a row that no token names (a table
    padded to a round size) gets a placeholder the tokenizer never produces.
    """

    def __init__(self, model_dir: str, vocabulary: Mapping[str, int], fallback_token: str) -> None:
        super().__init__(model_dir)
        self._vocabulary = vocabulary
        self._fallback_token = fallback_token
        self.dropped: list[str] = []

    def _load(self) -> TransformerDecoderModelSpec:
        # The converters' extension point: the stock spec, then its vocabulary and special tokens fitted to the table.
        spec = super()._load()
        rows = spec.get_vocabulary_size()
        tokens = [f"<unused row {row}>" for row in range(rows)]
        for token, token_id in sorted(self._vocabulary.items(), key=lambda item: item[1]):
            if token_id < rows:
                tokens[token_id] = token
            else:
                self.dropped.append(token)
        spec.register_vocabulary(tokens)
        kept = set(tokens)
        # CTranslate2 looks these up when it loads the model; the bot passes its own stop tokens.
        for name in ("bos_token", "eos_token", "unk_token"):
            if getattr(spec.config, name) not in kept:
                setattr(spec.config, name, self._fallback_token)
        return spec
