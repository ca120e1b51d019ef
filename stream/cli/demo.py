"""`swingdial demo`: the live demo, everything at once."""

from __future__ import annotations

import click

from stream.config import get_settings


@click.command("demo", context_settings={"ignore_unknown_options": True})
@click.option("--event", default="trump-musk-2024", show_default=True, help="Event file id.")
@click.option(
    "--speed",
    type=float,
    default=30.0,
    show_default=True,
    help="Event seconds per wall second (30: the 2 h 45 min interview in ~6 minutes; 60 "
    "outruns one worker on two cores during the outage spike).",
)
@click.option("--no-broker", is_flag=True, help="Use SWINGDIAL_KAFKA_BOOTSTRAP; start no broker.")
@click.option("--keep-broker", is_flag=True, help="Leave the broker running on exit.")
@click.option("--no-dashboard", is_flag=True, help="Do not start the Streamlit dashboard.")
@click.argument("simulate_args", nargs=-1, type=click.UNPROCESSED)
def demo_command(
    event: str,
    speed: float,
    no_broker: bool,
    keep_broker: bool,
    no_dashboard: bool,
    simulate_args: tuple[str, ...],
) -> None:
    """Run the live demo: broker, scoring worker, sink, dashboard and the event simulator.

    Prints the dashboard's URL (http://127.0.0.1:8501 by default); Ctrl-C stops every part
    in order, losing nothing. Extra arguments go to `swingdial simulate`.

    \b
    Examples:
      swingdial demo
      swingdial demo --speed 60              # faster: one event minute per second
      swingdial demo -- --rate-scale 0.2     # fewer posts per minute
      SWINGDIAL_KAFKA_BOOTSTRAP=kafka:9092 swingdial demo --no-broker
    """
    from stream.demo import run_demo

    code = run_demo(
        get_settings(),
        event=event,
        speed=speed,
        start_broker=not no_broker,
        keep_broker=keep_broker,
        open_dashboard=not no_dashboard,
        simulate_args=list(simulate_args),
        echo=click.echo,
    )
    raise SystemExit(code)


COMMANDS = [demo_command]
