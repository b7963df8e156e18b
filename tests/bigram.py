"""Hand-set test models: a GPT-2 reduced to a table from the last token to the next one's logits."""

from __future__ import annotations

from typing import Any


def blank_bigram_model(model: Any) -> None:
    """Zero every block's output and the position, token and output tables (call under ``torch.no_grad()``).

    With nothing added by attention or the MLPs and no positions, a token's logits depend on that token alone:
    the caller then writes the table through ``wte`` (a token's features) and ``lm_head`` (what they make likely).
    """
    for block in model.transformer.h:
        for projection in (block.attn.c_proj, block.mlp.c_proj):
            projection.weight.zero_()
            projection.bias.zero_()
    for table in (model.transformer.wpe.weight, model.transformer.wte.weight, model.lm_head.weight):
        table.zero_()
