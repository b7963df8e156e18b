"""Fine-tune ruDialoGPT on a CSV and save it where the bot loads it: a chat model, or a toast or horoscope one.

    python train.py --data chat.csv --out saved_model                  # fine-tune tinkoff-ai/ruDialoGPT-small
    python train.py --data chat.csv --out saved_model --from-scratch   # a small GPT-2 of its own, no hub needed
    python train.py --data toasts.csv --task toast --out toast_model   # columns topic,text

The last two lines printed are the held-out loss and perplexity before and after training. Run the
same command again after an interruption to resume from the last checkpoint.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from inference.modes import TASKS
from training.formats import InputError
from training.options import TrainingInterrupted, TrainSettings, check_paths


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds "(default: …)" only where there is a default to tell: not to required options, flags or None."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.required or action.default is None or isinstance(action.default, bool):
            return action.help
        return super()._get_help_string(action)


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


def _parser(defaults: TrainSettings) -> argparse.ArgumentParser:
    """The options; each one's dest is the TrainSettings field it sets."""
    parser = argparse.ArgumentParser(
        description="Fine-tune ruDialoGPT on a CSV: dialogue windows (--task chat) or texts on a topic (toast, "
        "horoscope).",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument(
        "--data",
        type=Path,
        required=True,
        help="the CSV: context_3,context_2,context_1,response for chat (python export_chat.py makes one; a "
        "feedback export's rating column is read too), topic,text for toast and horoscope",
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for model, tokenizer, generation config")
    parser.add_argument("--task", choices=TASKS, default=defaults.task, help="what the model is for")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--base", default=defaults.base, help="hub id or local folder of the model to fine-tune")
    source.add_argument(
        "--from-scratch", action="store_true", help="train a small GPT-2 and its own BPE tokenizer on the data instead"
    )
    parser.add_argument(
        "--min-rating",
        type=int,
        default=defaults.min_rating,
        help="skip rows rated below this (the rating column of a feedback export; unrated rows always count)",
    )
    parser.add_argument(
        "--epochs", type=_positive(float), default=defaults.epochs, help="passes over the training rows"
    )
    parser.add_argument("--max-steps", type=_positive(int), help="optimizer steps (overrides --epochs)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of the split, the order and the init")
    parser.add_argument(
        "--batch-size",
        type=_positive(int),
        default=defaults.batch_size,
        help="examples per batch; lower it when memory runs out",
    )
    parser.add_argument("--grad-accum", type=_positive(int), default=defaults.grad_accum, help="batches per step")
    parser.add_argument(
        "--lr",
        dest="learning_rate",
        metavar="LR",
        type=_positive(float),
        help="learning rate (default 5e-5, or 5e-4 from scratch)",
    )
    parser.add_argument("--max-length", type=_positive(int), default=defaults.max_length, help="tokens per example")
    parser.add_argument("--val-fraction", type=_fraction, default=defaults.val_fraction, help="rows held out")
    scratch = parser.add_argument_group("--from-scratch model")
    scratch.add_argument("--vocab-size", type=_positive(int), default=defaults.vocab_size, help="tokens to learn")
    scratch.add_argument("--n-embd", type=_positive(int), default=defaults.n_embd, help="width of the model")
    scratch.add_argument("--n-layer", type=_positive(int), default=defaults.n_layer, help="transformer blocks")
    scratch.add_argument(
        "--n-head", type=_positive(int), default=defaults.n_head, help="attention heads (must divide --n-embd)"
    )
    scratch.add_argument(
        "--n-positions", type=_positive(int), default=defaults.n_positions, help="longest prompt and reply, in tokens"
    )
    scratch.add_argument("--dropout", type=_fraction, default=defaults.dropout, help="dropout probability")
    parser.add_argument("--device", default=defaults.device, help="auto (CUDA when present), cpu, cuda, cuda:N or mps")
    parser.add_argument(
        "--checkpoint-dir",
        type=Path,
        help="a new or empty folder for the last checkpoint, deleted after training [checkpoints/NAME next to --out]",
    )
    parser.add_argument("--save-every", type=_positive(int), default=defaults.save_every, help="steps per checkpoint")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return parser


def parse_args(argv: list[str] | None = None) -> TrainSettings:
    """Command-line options as TrainSettings."""
    parser = _parser(TrainSettings(data=Path(), out=Path()))
    args = parser.parse_args(argv)
    if args.from_scratch and args.n_embd % args.n_head:
        parser.error(f"--n-embd {args.n_embd} is not a multiple of --n-head {args.n_head}")
    return TrainSettings(**vars(args))


def _train(argv: list[str] | None) -> int:
    settings = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    # The run's own progress lines; libraries say only warnings (torch logs cache statistics at exit at INFO).
    logging.getLogger("training").setLevel(logging.INFO)
    try:
        check_paths(settings)
        # torch and transformers take seconds to import: only after the checks that need neither.
        from training import loop

        result = loop.run(settings)
    except InputError as error:
        sys.stderr.write(f"train.py: {error}\n")
        return 2
    except TrainingInterrupted as error:
        sys.stderr.write(f"train.py: {error}: run the same command to resume\n")
        return 130
    for moment, evaluation in (("before", result.before), ("after", result.after)):
        print(f"held-out loss {moment}: {evaluation.loss:.4f}, perplexity {moment}: {evaluation.perplexity:.2f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Train and print the held-out loss and perplexity before and after; returns the exit status."""
    try:
        return _train(argv)
    except KeyboardInterrupt:
        # Before the training loop (imports, data, the first evaluation): no checkpoint of this run to keep.
        sys.stderr.write("train.py: interrupted before training; nothing new saved\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
