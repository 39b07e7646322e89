"""The `minibert` subcommands, one module each; every module has `register(sub)`, which adds its parser(s) with
`set_defaults(func=...)`. `minibert_adapters.cli` builds the command from this list, in this order."""

COMMANDS = ("check", "embed", "convert", "train", "evaluate", "experiments", "crosscheck")
