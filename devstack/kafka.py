"""A single-node Apache Kafka broker (KRaft), jars resolved from Maven Central."""

import asyncio
import base64
import fcntl
import hashlib
import logging
import os
import shutil
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from devstack.processes import ServerError, require_free, spawn, stop_pid, wait_for_port, wait_until
from pipeline.net import LOOPBACK, free_port

log = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.1"
_HERE = Path(__file__).parent
POM = _HERE / "kafka-pom.xml"
LOG_CONFIG = _HERE / "log4j2.yaml"
DEFAULT_CACHE_DIR = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lfpipe" / f"kafka-{KAFKA_VERSION}"
)
START_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0  # a clean KRaft shutdown takes a few seconds


@dataclass(frozen=True)
class KafkaProcess:
    """A running broker; everything needed to reach, stop or restart it."""

    pid: int
    bootstrap: str  # "127.0.0.1:<port>"
    port: int
    controller_port: int
    data_dir: Path
    log_path: Path
    jars: Path


def ensure_kafka_jars(cache_dir: Path = DEFAULT_CACHE_DIR) -> Path:
    """Return `cache_dir`/libs holding the broker's jars, running Maven if needed.

    A marker holding the pom's hash is written after a complete copy, so an
    interrupted run or an edited pom triggers a fresh resolve.
    """
    libs = cache_dir / "libs"
    marker = cache_dir / "complete"
    pom_hash = hashlib.sha256(POM.read_bytes()).hexdigest()
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Parallel test workers share the cache: let one of them resolve.
    with (cache_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if libs.is_dir() and marker.exists() and marker.read_text() == pom_hash:
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise ServerError("Maven (mvn) is needed once to download the Kafka jars")
        log.info("resolving Kafka jars with Maven (first run only) into %s", libs)
        shutil.rmtree(libs, ignore_errors=True)
        result = subprocess.run(
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(POM),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={libs}",
                "-DincludeScope=runtime",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise ServerError(f"Maven failed to resolve Kafka:\n{result.stdout}{result.stderr}")
        marker.write_text(pom_hash)
        log.info("Kafka jars ready in %s", libs)
    return libs


JVM_OPTIONS = ("-Xms256m", "-Xmx512m", "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={LOG_CONFIG}")


def start_kafka(
    data_dir: Path,
    jars: Path,
    port: int | None = None,
    controller_port: int | None = None,
) -> KafkaProcess:
    """Start a broker+controller on 127.0.0.1 keeping its data in `data_dir`.

    Formats the storage on first use only, so starting again on the same
    `data_dir` keeps the topics. Returns once the broker answers a metadata
    request.
    """
    port = port or free_port()
    controller_port = controller_port or free_port()
    require_free(port, controller_port)
    data_dir.mkdir(parents=True, exist_ok=True)
    log_dirs = data_dir / "kraft"
    config = data_dir / "server.properties"
    log_path = data_dir / "broker.log"
    config.write_text(_server_properties(port, controller_port, log_dirs))
    java = _java()
    classpath = f"{jars}/*"
    if not (log_dirs / "meta.properties").exists():
        _format_storage(java, classpath, config)
    pid = spawn([java, *JVM_OPTIONS, "-cp", classpath, "kafka.Kafka", str(config)], log_path)
    proc = KafkaProcess(
        pid=pid,
        bootstrap=f"{LOOPBACK}:{port}",
        port=port,
        controller_port=controller_port,
        data_dir=data_dir,
        log_path=log_path,
        jars=jars,
    )
    try:
        wait_for_port(LOOPBACK, port, START_TIMEOUT, pid, log_path)
        # An open port is not enough: the broker must have joined the quorum.
        wait_until(
            lambda: _answers_metadata(proc.bootstrap),
            f"Kafka metadata on {proc.bootstrap}",
            START_TIMEOUT,
            pid,
            log_path,
        )
    except BaseException:
        stop_pid(pid, STOP_TIMEOUT)
        raise
    return proc


def stop_kafka(proc: KafkaProcess) -> None:
    """Stop the broker (clean shutdown, SIGKILL after STOP_TIMEOUT)."""
    stop_pid(proc.pid, STOP_TIMEOUT)


def _server_properties(port: int, controller_port: int, log_dirs: Path) -> str:
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{LOOPBACK}:{controller_port}",
        "listeners": f"PLAINTEXT://{LOOPBACK}:{port},CONTROLLER://{LOOPBACK}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{LOOPBACK}:{port}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(log_dirs),
        # Single node: internal topics cannot be replicated.
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        # Fewer internal partitions and no join delay: faster start and tests.
        "offsets.topic.num.partitions": "4",
        "group.initial.rebalance.delay.ms": "0",
        # Topics are created explicitly; a typo must not create a new one.
        "auto.create.topics.enable": "false",
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if java is None:
        raise ServerError("java is needed to run Kafka (set JAVA_HOME or put it on PATH)")
    return java


def _cluster_id() -> str:
    # Same as Kafka's Uuid.randomUuid(): base64url of 16 random bytes, never
    # starting with "-"; saves a JVM start of `StorageTool random-uuid`.
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def _format_storage(java: str, classpath: str, config: Path) -> None:
    # The cluster id lands in meta.properties, which later starts reuse.
    result = subprocess.run(
        [
            java,
            f"-Dlog4j2.configurationFile={LOG_CONFIG}",
            "-cp",
            classpath,
            "kafka.tools.StorageTool",
            "format",
            "-t",
            _cluster_id(),
            "-c",
            str(config),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ServerError(f"formatting Kafka storage failed:\n{result.stdout}{result.stderr}")


def _answers_metadata(bootstrap: str) -> bool:
    async def probe() -> bool:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        try:
            await admin.start()
            cluster = await admin.describe_cluster()
        except (KafkaError, TimeoutError):
            return False
        finally:
            await admin.close()
        return bool(cluster["brokers"])

    # A thread of its own, so this also works when the caller runs an event loop.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, probe()).result()
