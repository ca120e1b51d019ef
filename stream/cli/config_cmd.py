"""`swingdial config`: show the effective settings."""

from __future__ import annotations

import json

import click

from stream.config import Settings, get_settings


@click.command("config")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of NAME=value lines.")
def config_command(as_json: bool) -> None:
    """Print every setting with its current value and environment variable.

    \b
    Examples:
      swingdial config
      SWINGDIAL_PARTITIONS=3 swingdial config --json
    """
    settings = get_settings()
    values = json.loads(settings.model_dump_json())
    if as_json:
        click.echo(json.dumps(values, indent=2))
        return
    for name in Settings.model_fields:
        click.echo(f"SWINGDIAL_{name.upper()}={values[name]}")


COMMANDS = [config_command]
