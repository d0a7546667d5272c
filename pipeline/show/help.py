"""The command line's help: the commands by what they are for, each command's with an example."""

from __future__ import annotations

import click

# Each section's commands, in the order a newcomer meets them, with an example of each.
SECTIONS: dict[str, dict[str, str]] = {
    "Inspect": {
        "list": "lambda-images list --json | jq -r '.[].id'",
        "matrix": "lambda-images matrix python3.11.debian12 --arch arm64",
        "outdated": "lambda-images outdated python3.11.debian12 --registry 127.0.0.1:5000/lambda",
    },
    "Build and test": {
        "rebuild": "lambda-images rebuild provided.debian12 --arch x86_64",
        "build": "lambda-images build python3.11.debian12 --arch arm64 --json",
        "test": "lambda-images test python3.11.debian12 --arch x86_64",
        "base": "lambda-images base provided.debian12 --arch aarch64",
        "snapshot": "lambda-images snapshot provided.debian12 --json",
    },
    "Publish": {
        "publish": "lambda-images publish provided.debian12 --registry 127.0.0.1:5000/lambda",
        "branch": "lambda-images branch provided.debian12 --git-remote file://$PWD/out/remote.git",
        "plan": "lambda-images plan --cells cells.json states --json",
        "refresh": "lambda-images refresh --registry public.ecr.aws/my-alias --report r.json",
    },
    "Run a function locally": {
        "invoke": "lambda-images invoke IMAGE --handler app.handler --code . --event '{}'",
        "serve": "lambda-images serve IMAGE --handler app.handler --code . --port 9000",
    },
    "Maintain the repository": {
        "lock": "lambda-images lock python3.11.debian12",
        "render": "lambda-images render --check",
        "docs": "lambda-images docs --check",
    },
}


class Sections(click.Group):
    """Commands listed by section in the group's help, each command's with its example."""

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        example = next((s[name] for s in SECTIONS.values() if name in s), None)
        if command is not None and example and not command.epilog:
            command.epilog = f"\b\nExample:\n  {example}"
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        width = max(len(name) for names in SECTIONS.values() for name in names)
        for title, names in SECTIONS.items():
            commands = [(n, c) for n in names if (c := self.get_command(ctx, n)) is not None]
            with formatter.section(title):
                limit = formatter.width - 6 - width
                formatter.write_dl(
                    [(n.ljust(width), c.get_short_help_str(limit)) for n, c in commands]
                )
        formatter.write_paragraph()
        formatter.write_text(
            "`lambda-images COMMAND --help` for a command's options and an example. Shell "
            'completion: eval "$(_LAMBDA_IMAGES_COMPLETE=bash_source lambda-images)" (zsh_source, '
            "fish_source)."
        )
