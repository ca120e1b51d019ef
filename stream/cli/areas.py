"""Collects the commands of every area; add a new area's module here."""

from __future__ import annotations

import importlib

import click

AREA_MODULES = [
    "stream.cli.config_cmd",
    "stream.cli.broker",
    "stream.cli.sources",
    "stream.cli.worker",
    "stream.cli.score",
    "stream.cli.sink",
    "stream.cli.query",
    "stream.cli.dlq",
    "stream.cli.bench",
    "stream.cli.dashboard",
    "stream.cli.models",
    "stream.cli.demo",
]


def all_commands() -> list[click.Command]:
    commands: list[click.Command] = []
    for name in AREA_MODULES:
        commands.extend(importlib.import_module(name).COMMANDS)
    return commands
