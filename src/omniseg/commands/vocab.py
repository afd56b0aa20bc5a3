"""`omniseg vocab list | show NAME`: the vocabularies shipped with omniseg (see omniseg.vocabularies).

Any command that takes --vocab accepts one of these names as well as a path to a vocabulary file.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from omniseg.commands import EXIT_OK

if TYPE_CHECKING:
    from omniseg.vocab import Vocabulary


def register(sub: argparse._SubParsersAction) -> None:
    vocab = sub.add_parser("vocab", help="list the shipped vocabularies or show one")
    actions = vocab.add_subparsers(dest="action", required=True)
    lst = actions.add_parser("list", help="name, number of classes and description of each shipped vocabulary")
    lst.set_defaults(func=run_list)
    show = actions.add_parser("show", help="the classes of a vocabulary (a shipped name or a file)")
    show.add_argument("name", metavar="NAME_OR_FILE")
    show.add_argument("--limit", type=int, help="show the first N classes only")
    show.add_argument("--templates", help="prompt templates: a set name or 'a photo of a {}.|...' (see segment)")
    show.add_argument("--template-mode", choices=("average", "max"))
    show.add_argument("--prompts", action="store_true", help="list every prompt text instead of the classes")
    show.set_defaults(func=run_show)


def add_vocab_options(parser: argparse.ArgumentParser) -> None:
    """--templates and --template-mode, shared by every command that reads a vocabulary."""
    parser.add_argument(
        "--templates",
        help="prompt templates for every class name: 'plain' ({}), 'photo', 'scene' (8 templates) or "
        "'|'-separated texts with one {} each (default: the vocabulary file's '#! templates:' or plain)",
    )
    parser.add_argument(
        "--template-mode",
        choices=("average", "max"),
        help="average: a name's template embeddings are averaged (ViLD/OMG-Seg); max: every prompt scored, "
        "best kept (default: the file's '#! template_mode:' or average); synonyms are always max-ensembled",
    )


def apply_vocab_options(vocab: Vocabulary, args: argparse.Namespace) -> Vocabulary:
    """--templates / --template-mode replace the vocabulary's own settings (before it is embedded)."""
    from omniseg.vocab import check_template_mode, parse_templates

    if getattr(args, "templates", None):
        vocab.templates = parse_templates(args.templates)
    if getattr(args, "template_mode", None):
        vocab.template_mode = check_template_mode(args.template_mode)
    return vocab


def run_list(args: argparse.Namespace) -> int:
    from omniseg import vocabularies

    rows = []
    for name in vocabularies.names():
        with vocabularies.vocabulary_path(name).open(encoding="utf-8") as handle:
            count = sum(1 for line in handle if line.strip() and not line.lstrip().startswith("#"))
        rows.append((name, count, vocabularies.description(name)))
    width = max(len(r[0]) for r in rows)
    for name, count, text in rows:
        print(f"{name:<{width}}  {count:>7,}  {text}")
    return EXIT_OK


def run_show(args: argparse.Namespace) -> int:
    from omniseg.vocab import Vocabulary

    vocab = apply_vocab_options(Vocabulary.load(args.name), args)
    print(
        f"# {len(vocab):,} classes, {sum(map(len, vocab.synonyms)):,} names, templates ({vocab.template_mode}): "
        + " | ".join(vocab.templates)
    )
    if args.prompts:
        texts, owner = vocab.prompts()
        shown = texts if args.limit is None else texts[: args.limit]
        for text, k in zip(shown, owner, strict=False):
            print(f"{k}\t{text}")
        return EXIT_OK
    assert vocab.stuff is not None
    count = len(vocab) if args.limit is None else min(len(vocab), max(0, args.limit))
    for k in range(count):
        print(f"{k}\t{', '.join(vocab.synonyms[k])}" + (" [stuff]" if vocab.stuff[k] else ""))
    return EXIT_OK
