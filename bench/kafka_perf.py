"""The broker limit: Kafka's own ProducerPerformance / ConsumerPerformance on the bench broker.

The tools live in `org.apache.kafka:kafka-tools` (same version as the broker), which the broker's
runtime jars (var/kafka-libs) do not include; they are resolved once with Maven from
bench/kafka_tools/pom.xml into var/kafka-tools-libs, like devstack resolves the broker.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import uuid
from pathlib import Path

from devstack.kafka import find_java

POM = Path(__file__).with_name("kafka_tools") / "pom.xml"
MARKER = ".resolved"


def tools_classpath(cache_dir: Path) -> str:
    """`<cache>/kafka-tools-libs/*`, resolving the jars with Maven on first use."""
    libs = cache_dir / "kafka-tools-libs"
    if not (libs / MARKER).is_file():
        mvn = shutil.which("mvn")
        if mvn is None:
            raise RuntimeError("mvn not found: it is needed once to fetch org.apache.kafka:kafka-tools")
        tmp = cache_dir / "kafka-tools-libs.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        result = subprocess.run(
            [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies", "-DincludeScope=runtime",
             f"-DoutputDirectory={tmp}"],
            capture_output=True, text=True, check=False,
        )
        if result.returncode != 0 or not list(tmp.glob("kafka-tools-*.jar")):
            raise RuntimeError(f"mvn could not resolve kafka-tools: {(result.stdout + result.stderr)[-600:]}")
        (tmp / MARKER).write_text("kafka-tools\n")
        shutil.rmtree(libs, ignore_errors=True)
        tmp.replace(libs)
    return f"{libs}/*"


async def _java(classpath: str, main: str, *args: str, timeout: float = 180.0) -> str:
    process = await asyncio.create_subprocess_exec(
        find_java(), "-Xmx256m", "-cp", classpath, main, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=timeout)
    text = out.decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"{main.rsplit('.', 1)[-1]} exited {process.returncode}: {text[-600:]}")
    return text


async def producer_performance(cache_dir: Path, bootstrap: str, topic: str, records: int,
                               record_size: int) -> dict[str, float]:
    """records/s and latency (ms) of ProducerPerformance, acks=all, as fast as it goes."""
    text = await _java(
        tools_classpath(cache_dir), "org.apache.kafka.tools.ProducerPerformance",
        "--topic", topic, "--num-records", str(records), "--record-size", str(record_size),
        "--throughput", "-1", "--producer-props", f"bootstrap.servers={bootstrap}", "acks=all", "linger.ms=5",
    )
    final = [line for line in text.splitlines() if "records sent" in line][-1]
    rate = re.search(r"([\d.]+) records/sec", final)
    avg = re.search(r"([\d.]+) ms avg latency", final)
    p99 = re.search(r"(\d+) ms 99th", final)
    assert rate is not None, final
    return {"records_per_second": float(rate.group(1)), "avg_latency_ms": float(avg.group(1)) if avg else -1,
            "p99_latency_ms": float(p99.group(1)) if p99 else -1}


async def consumer_performance(cache_dir: Path, bootstrap: str, topic: str, records: int) -> dict[str, float]:
    """records/s of ConsumerPerformance reading `records` messages from the start of `topic`."""
    text = await _java(
        tools_classpath(cache_dir), "org.apache.kafka.tools.ConsumerPerformance",
        "--bootstrap-server", bootstrap, "--topic", topic, "--num-records", str(records),
        "--group", f"bench-perf-{uuid.uuid4().hex[:8]}", "--timeout", "60000",
    )
    lines = [line for line in text.splitlines() if line.strip()]
    header_index = next(i for i, line in enumerate(lines) if line.startswith("start.time"))
    header = [h.strip() for h in lines[header_index].split(",")]
    values = [v.strip() for v in lines[header_index + 1].split(",")]
    row = dict(zip(header, values, strict=False))
    return {"records_per_second": float(row["fetch.nMsg.sec"]), "with_group_join": float(row["nMsg.sec"]),
            "records": float(row["data.consumed.in.nMsg"])}
