"""The `vitbench` command line: one thin module per group of commands (parse, call the stage,
print), plus whatever subcommands plugins add through the ``vitbench.commands`` entry point
(``vitbench aihub ...``, ``vitbench android ...``, the report commands).

Errors a user can cause end with one line on stderr and a non-zero exit (2 unless a command
documents another); programming errors keep their traceback.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from harness import __version__
from harness.cli import export, models, profile, run, train
from harness.errors import VitbenchError

CORE_COMMANDS: dict[str, click.Command] = {
    "models": models.models,
    "info": models.info,
    "export": export.export,
    "exporters": export.exporters,
    "targets": profile.targets,
    "profile": profile.profile,
    "plan": run.plan,
    "run": run.run,
    "gate": run.gate,
    "train": train.train,
    "compress": train.compress,
    "eval": train.eval_,
}


def _broken(name: str, ref: str, exc: BaseException) -> click.Command:
    """A stand-in for a plugin command that failed to load: it says so when called."""

    @click.command(
        name,
        help=f"(plugin {ref} failed to load: {exc})",
        context_settings={"ignore_unknown_options": True},
    )
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def command(args: tuple[str, ...]) -> None:
        raise VitbenchError(f"command plugin {name!r} ({ref}) failed to load: {exc}")

    return command


class VitbenchGroup(click.Group):
    """The top-level group: core commands, then plugin commands, loaded on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        from harness import plugins

        return sorted({*CORE_COMMANDS, *plugins.commands()})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in CORE_COMMANDS:
            return CORE_COMMANDS[name]
        from harness import plugins

        ep = plugins.commands().get(name)
        if ep is None:
            return None
        try:
            command = ep.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin costs only its command
            return _broken(name, ep.value, exc)
        if not isinstance(command, click.Command):
            return _broken(name, ep.value, TypeError("not a click command"))
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except VitbenchError as exc:
            click.echo(f"vitbench: error: {exc}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=VitbenchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="vitbench")
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Also show third-party warnings and native runtimes' log lines (always in the log).",
)
@click.option(
    "--log-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Log file (default: $VITBENCH_LOG, else vitbench.log in the cache folder).",
)
def main(verbose: bool, log_file: str | None) -> None:
    """Compress, export and benchmark a lightweight medical ViT across devices."""
    from harness import console

    console.setup(verbose=verbose, log_file=log_file)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
