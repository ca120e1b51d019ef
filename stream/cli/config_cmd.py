"""`swingdial config`: show the effective settings."""

from __future__ import annotations

import json
import shlex

import click

from stream.config import get_settings


@click.command("config")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of NAME=value lines.")
def config_command(as_json: bool) -> None:
    """Print every setting with its current value and environment variable.

    Lists print comma-separated and secrets as ***, so each line can be pasted back into
    a shell (an unset value prints empty).

    \b
    Examples:
      swingdial config
      SWINGDIAL_KAFKA_PARTITIONS=3 swingdial config --json
    """
    values = get_settings().display_values()
    if as_json:
        click.echo(json.dumps(values, indent=2))
        return
    for name, text in values.items():
        click.echo(f"SWINGDIAL_{name.upper()}={shlex.quote(text) if text else ''}")


COMMANDS = [config_command]
