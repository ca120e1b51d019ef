"""The ``swingdial`` command line. Each area registers its commands from its own module."""

from __future__ import annotations

import logging

import click

from stream import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="swingdial")
@click.option("-v", "--verbose", is_flag=True, help="Log at DEBUG level.")
def main(verbose: bool) -> None:
    """swingdial: how a live audience, and above all moderate / undecided voters, reacts
    minute by minute.

    \b
    Quick start:
      swingdial demo                  # broker + worker + sink + simulator + dashboard
      swingdial sql "SELECT count(*) FROM scores"

    Every setting can be set by an environment variable SWINGDIAL_<NAME>; see
    `swingdial config`.
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not verbose:  # kafka-python narrates every connection at INFO
        logging.getLogger("kafka").setLevel(logging.WARNING)


def _register() -> None:
    # Imported here so that `swingdial --help` stays fast and areas stay independent.
    from stream.cli import areas

    for command in areas.all_commands():
        main.add_command(command)


_register()
