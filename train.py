"""Fine-tune ruDialoGPT on a dialogue CSV and save it where the bot loads it.

    python train.py --data chat.csv --out saved_model                  # fine-tune tinkoff-ai/ruDialoGPT-small
    python train.py --data chat.csv --out saved_model --from-scratch   # a small GPT-2 of its own, no hub needed

The last two lines printed are the held-out loss and perplexity before and after training. Run the
same command again after an interruption to resume from the last checkpoint.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from training import formats, loop

logger = logging.getLogger("train")


def _positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    def parse(value: str) -> float:
        number = kind(value)
        if number <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {value}")
        return number

    parse.__name__ = kind.__name__
    return parse


def _fraction(value: str) -> float:
    number = float(value)
    if not 0 < number < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return number


def parse_args(argv: list[str] | None = None) -> loop.TrainSettings:
    """Command-line options as TrainSettings."""
    defaults = loop.TrainSettings(data=Path(), out=Path())
    parser = argparse.ArgumentParser(
        description="Fine-tune ruDialoGPT on a CSV of dialogue windows (context_3,context_2,context_1,response).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--data", type=Path, required=True, help="the CSV (python export_chat.py makes one)")
    parser.add_argument("--out", type=Path, required=True, help="directory for model, tokenizer, generation config")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--base", default=defaults.base, help="hub id or local directory of the model to fine-tune")
    source.add_argument(
        "--from-scratch", action="store_true", help="train a small GPT-2 and its own BPE tokenizer on the data instead"
    )
    parser.add_argument("--epochs", type=_positive(float), default=defaults.epochs)
    parser.add_argument("--max-steps", type=_positive(int), help="optimizer steps (overrides --epochs)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of the split, the order and the init")
    parser.add_argument("--batch-size", type=_positive(int), default=defaults.batch_size)
    parser.add_argument("--grad-accum", type=_positive(int), default=defaults.grad_accum, help="batches per step")
    parser.add_argument("--lr", type=_positive(float), help="learning rate (default 5e-5, or 5e-4 from scratch)")
    parser.add_argument("--max-length", type=_positive(int), default=defaults.max_length, help="tokens per example")
    parser.add_argument("--val-fraction", type=_fraction, default=defaults.val_fraction, help="rows held out")
    scratch = parser.add_argument_group("--from-scratch model")
    scratch.add_argument("--vocab-size", type=_positive(int), default=defaults.vocab_size)
    scratch.add_argument("--n-embd", type=_positive(int), default=defaults.n_embd)
    scratch.add_argument("--n-layer", type=_positive(int), default=defaults.n_layer)
    scratch.add_argument("--n-head", type=_positive(int), default=defaults.n_head)
    scratch.add_argument("--n-positions", type=_positive(int), default=defaults.n_positions)
    scratch.add_argument("--dropout", type=_fraction, default=defaults.dropout)
    parser.add_argument("--device", default=defaults.device, help="auto (CUDA when present), cpu, cuda or cuda:N")
    parser.add_argument(
        "--checkpoint-dir", type=Path, help="where to keep the last checkpoint [checkpoints/NAME next to --out]"
    )
    parser.add_argument("--save-every", type=_positive(int), default=defaults.save_every, help="steps per checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.from_scratch and args.n_embd % args.n_head:
        parser.error(f"--n-embd {args.n_embd} is not a multiple of --n-head {args.n_head}")
    return loop.TrainSettings(
        data=args.data,
        out=args.out,
        base=args.base,
        from_scratch=args.from_scratch,
        epochs=args.epochs,
        max_steps=args.max_steps,
        seed=args.seed,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        learning_rate=args.lr,
        max_length=args.max_length,
        val_fraction=args.val_fraction,
        vocab_size=args.vocab_size,
        n_embd=args.n_embd,
        n_layer=args.n_layer,
        n_head=args.n_head,
        n_positions=args.n_positions,
        dropout=args.dropout,
        device=args.device,
        checkpoint_dir=args.checkpoint_dir,
        save_every=args.save_every,
        progress=not args.no_progress,
    )


def main(argv: list[str] | None = None) -> int:
    """Train and print the held-out loss and perplexity before and after; returns the exit status."""
    settings = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    try:
        result = loop.run(settings)
    except formats.InputError as error:
        sys.stderr.write(f"train.py: {error}\n")
        return 2
    except loop.TrainingInterrupted as error:
        sys.stderr.write(f"train.py: {error}: run the same command to resume\n")
        return 130
    for moment, evaluation in (("before", result.before), ("after", result.after)):
        print(f"held-out loss {moment}: {evaluation.loss:.4f}, perplexity {moment}: {evaluation.perplexity:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
