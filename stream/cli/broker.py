"""`swingdial broker start|stop|status|topics`: the local Kafka broker."""

from __future__ import annotations

import json

import click

from infra.broker import Broker, BrokerError
from stream import kafka
from stream.config import get_settings


@click.group("broker")
def broker_group() -> None:
    """Run the local Apache Kafka broker or cluster (KRaft mode, 127.0.0.1 only).

    Its jars are resolved from Maven Central by infra/pom.xml on first start; its data
    stays under $SWINGDIAL_HOME/kafka (kafka/node-N per node of a cluster) so a restart
    keeps every topic and offset. To use your own cluster instead, set
    SWINGDIAL_KAFKA_BOOTSTRAP (and the security settings) and skip `broker start`.
    """


@broker_group.command("start")
@click.option("--partitions", type=int, default=None, help="Partitions per topic (default 6).")
@click.option(
    "--nodes",
    type=click.IntRange(1, 9),
    default=None,
    help="Brokers in the local KRaft cluster (default $SWINGDIAL_KAFKA_NODES, 1).",
)
def start(partitions: int | None, nodes: int | None) -> None:
    """Start the broker (or a cluster of --nodes) in the background and create the topics.

    A cluster's nodes listen on the bootstrap port + 2*i (9092, 9094, 9096); topics get
    replication factor min(3, nodes) and min.insync.replicas one less. Set
    SWINGDIAL_KAFKA_NODES=3 for the other commands too, so they bootstrap from every node.

    \b
    Examples:
      swingdial broker start
      swingdial broker start --nodes 3
      SWINGDIAL_KAFKA_BOOTSTRAP=127.0.0.1:19092 swingdial broker start --partitions 3
    """
    settings = get_settings()
    if nodes:
        settings = settings.replace(**{"kafka_nodes": nodes})
    try:
        broker = Broker(settings)
        pid = broker.start()
    except BrokerError as exc:
        raise click.ClickException(str(exc)) from None
    kafka.wait_for_broker(settings, brokers=settings.kafka.nodes)
    created = kafka.ensure_topics(settings, partitions)
    bootstrap = ",".join(settings.kafka.bootstrap_servers())
    if settings.kafka.nodes == 1:
        click.echo(f"broker running (pid {pid}) on {bootstrap}")
    else:
        pids = ", ".join(str(p) for p in broker.pids())
        click.echo(
            f"cluster of {settings.kafka.nodes} brokers running (pids {pids}) on {bootstrap}"
        )
        click.echo(
            f"replication factor {settings.kafka.replicas}, "
            f"min.insync.replicas {settings.kafka.min_insync}"
        )
        if get_settings().kafka.nodes != settings.kafka.nodes:
            click.echo(
                f"for the other commands: export SWINGDIAL_KAFKA_NODES={settings.kafka.nodes}"
            )
    if created:
        click.echo(f"created topics: {', '.join(created)}")


@broker_group.command("stop")
def stop() -> None:
    """Stop the broker, or every node of the cluster, cleanly (data is kept).

    \b
    Example:
      swingdial broker stop
    """
    stopped = Broker(get_settings()).stop()
    click.echo("broker stopped" if stopped else "broker was not running")


@broker_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(as_json: bool) -> None:
    """Say whether the broker runs and answers; exit code 1 if it does not.

    \b
    Example:
      swingdial broker status
    """
    info = Broker(get_settings()).status()
    if as_json:
        click.echo(json.dumps(info))
    else:
        for key, value in info.items():
            click.echo(f"{key}: {value}")
    if not info["listening"]:
        raise SystemExit(1)


@broker_group.command("topics")
@click.option("--partitions", type=int, default=None, help="Partitions for topics created now.")
def topics(partitions: int | None) -> None:
    """Create the project's topics on the configured cluster if they are missing.

    \b
    Example:
      SWINGDIAL_KAFKA_BOOTSTRAP=my-cluster:9092 swingdial broker topics --partitions 12
    """
    settings = get_settings()
    kafka.wait_for_broker(settings, timeout_s=20)
    created = kafka.ensure_topics(settings, partitions)
    click.echo(f"created: {', '.join(created)}" if created else "all topics exist")


COMMANDS = [broker_group]
