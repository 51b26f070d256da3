"""Declarative topics (``topics/topics.toml``): create what is missing, report drift, never delete."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

TOPICS_FILE = Path(__file__).resolve().parents[2] / "topics" / "topics.toml"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)


def load_topic_specs(prefix: str = "", path: Path = TOPICS_FILE) -> dict[str, TopicSpec]:
    """Topic specs by their unprefixed name."""
    document = tomllib.loads(path.read_text())
    return {
        entry["name"]: TopicSpec(
            name=f"{prefix}{entry['name']}",
            partitions=int(entry["partitions"]),
            replication_factor=int(entry.get("replication_factor", 1)),
            config={key: str(value) for key, value in entry.get("config", {}).items()},
        )
        for entry in document["topic"]
    }


def describe(spec: TopicSpec) -> str:
    """One line: the topic and every setting ``topics apply`` would give it."""
    settings = " ".join(f"{key}={value}" for key, value in sorted(spec.config.items()))
    return f"{spec.name} partitions={spec.partitions} replication_factor={spec.replication_factor} {settings}"


def with_replication(specs: dict[str, TopicSpec], replication_factor: int) -> dict[str, TopicSpec]:
    """The specs for a cluster: every topic replicated ``replication_factor`` times; from 3 replicas on, a
    write needs 2 in sync (with the producers' acks=all, an acknowledged event survives losing a broker)."""
    extra = {"min.insync.replicas": "2"} if replication_factor >= 3 else {}
    return {
        name: TopicSpec(spec.name, spec.partitions, replication_factor, {**spec.config, **extra})
        for name, spec in specs.items()
    }


@dataclass
class ApplyReport:
    created: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)


async def apply_topics(bootstrap: str, specs: dict[str, TopicSpec]) -> ApplyReport:
    report = ApplyReport()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="lfpipe-topics")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in specs.values() if spec.name not in existing]
        if missing:
            await admin.create_topics(
                [NewTopic(s.name, s.partitions, s.replication_factor, topic_configs=s.config) for s in missing]
            )
            report.created = [spec.name for spec in missing]
        present = [spec for spec in specs.values() if spec.name in existing]
        if present:
            described = {t["topic"]: t for t in await admin.describe_topics([s.name for s in present])}
            configs = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, s.name) for s in present])
            actual_config: dict[str, dict[str, str]] = {}
            for response in configs:
                for resource in response.resources:
                    actual_config[resource[3]] = {entry[0]: entry[1] for entry in resource[4]}
            for spec in present:
                problems = []
                partitions = len(described[spec.name]["partitions"])
                if partitions != spec.partitions:
                    problems.append(f"partitions {partitions} (declared {spec.partitions})")
                for key, value in spec.config.items():
                    actual = actual_config.get(spec.name, {}).get(key)
                    if actual != value:
                        problems.append(f"{key}={actual} (declared {value})")
                if problems:
                    report.drift.append(f"{spec.name}: " + ", ".join(problems))
                else:
                    report.unchanged.append(spec.name)
    finally:
        await admin.close()
    return report
