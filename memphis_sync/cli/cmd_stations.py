"""``memphis-sync stations [NAME ...]``: list the stations of a broker, or inspect some.

Read from JetStream over the client connection (a station is one stream per partition, named
``<internal name>$<partition>``, or one stream named after it on old brokers): partitions,
retention, storage, messages, bytes, consumer groups with what each still has to read, and the
dead-letter count where the broker lets a client read it (a memphis-sync local broker; a
Memphis broker keeps dead letters in its database: shown as ``-``).
"""

from __future__ import annotations

import argparse
import json
import re
from typing import Any, Dict, List, Optional, Sequence, TextIO, Tuple

from ..errors import MemphisError, StreamNotFoundError
from ..jetstream import JetStream
from ..jetstream.types import StreamInfo
from . import options
from .cmd_produce import _text

__all__ = ["add_arguments", "run", "station_streams", "describe_station", "format_table"]

_PARTITION = re.compile(r"(.+)\$(\d+)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``stations`` options."""
    parser.add_argument("names", nargs="*", metavar="NAME", help="stations to inspect (default: list them all)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    options.add_connection_arguments(parser)


def station_streams(js: JetStream) -> Dict[str, List[str]]:
    """``{station name: [stream of each partition, in order]}`` of every station."""
    stations: Dict[str, List[Tuple[int, str]]] = {}
    for stream in js.stream_names():
        if stream.startswith(("$", "KV_", "OBJ_")):
            continue  # Memphis' own streams, key-value buckets
        match = _PARTITION.fullmatch(stream)
        internal, number = (match.group(1), int(match.group(2))) if match else (stream, 0)
        stations.setdefault(internal.replace("#", "."), []).append((number, stream))
    return {name: [stream for _, stream in sorted(parts)] for name, parts in sorted(stations.items())}


def _retention(info: StreamInfo) -> str:
    config = info.config
    if config.retention.value == "interest":
        return "ack_based"
    if config.max_msgs and config.max_msgs > 0:
        return f"messages {config.max_msgs}"
    if config.max_bytes and config.max_bytes > 0:
        return f"bytes {config.max_bytes}"
    if config.max_age:
        return f"message_age_sec {int(config.max_age)}"
    return "none"


def describe_station(js: JetStream, name: str, streams: Sequence[str]) -> Dict[str, Any]:
    """One station's settings, partitions and consumer groups, as a JSON-ready dict."""
    infos = [js.stream_info(stream) for stream in streams]
    first = infos[0]
    groups: Dict[str, Dict[str, int]] = {}
    for stream in streams:
        for durable in js.consumer_names(stream):
            info = js.consumer_info(stream, durable)
            group = groups.setdefault(durable.replace("#", "."), {"unread": 0, "unacked": 0, "redelivered": 0})
            group["unread"] += info.num_pending
            group["unacked"] += info.num_ack_pending
            group["redelivered"] += info.num_redelivered
    return {
        "name": name,
        "dead_letters": _dead_letters(js, name),
        "partitions": len(infos) if _PARTITION.fullmatch(streams[0]) else 0,
        "retention": _retention(first),
        "storage": first.config.storage.value,
        "replicas": first.config.num_replicas,
        "idempotency_window_ms": int((first.config.duplicate_window or 0) * 1000),
        "messages": sum(i.state.messages for i in infos),
        "bytes": sum(i.state.bytes for i in infos),
        "partition_details": [
            {"stream": i.config.name, "messages": i.state.messages, "first_seq": i.state.first_seq, "last_seq": i.state.last_seq}
            for i in infos
        ],
        "consumer_groups": groups,
    }


def _dead_letters(js: JetStream, name: str) -> Optional[int]:
    """The station's dead-letter count when the broker is a memphis-sync local broker (whose
    records are readable over NATS), else None (a Memphis broker keeps them in its database)."""
    from ..broker.handlers.dls import dls_records

    try:
        return len(dls_records(js, name))
    except MemphisError:  # no metadata stream: another broker
        return None


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns padded to their widest cell; numbers right-aligned."""
    cells = [list(map(str, headers))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [all(isinstance(row[i], int) for row in rows) and bool(rows) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [cell.rjust(w) if num else cell.ljust(w) for cell, w, num in zip(row, widths, numeric)]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser, out: TextIO, err: TextIO) -> int:
    """Run ``stations``; returns the exit code (1: an error or an unknown station)."""
    try:
        with options.connect(args) as memphis:
            js = JetStream(memphis.connection)
            known = station_streams(js)
            names = [name.lower() for name in args.names] or list(known)
            missing = [name for name in names if name not in known]
            found = [describe_station(js, name, known[name]) for name in names if name in known]
    except (MemphisError, StreamNotFoundError) as exc:
        print(f"memphis-sync stations: {_text(exc)}", file=err, flush=True)
        return 1
    if args.json:
        print(json.dumps(found if args.names else found, indent=2, sort_keys=True), file=out)
    elif args.names:
        for station in found:
            _print_station(station, out)
    else:
        rows = [
            (s["name"], s["partitions"], s["retention"], s["storage"], s["messages"], s["bytes"],
             "-" if s["dead_letters"] is None else s["dead_letters"], ",".join(sorted(s["consumer_groups"])) or "-")
            for s in found
        ]
        print(format_table(("STATION", "PARTITIONS", "RETENTION", "STORAGE", "MESSAGES", "BYTES", "DLS", "CONSUMER GROUPS"),
                           rows), file=out)
    for name in missing:
        print(f"memphis-sync stations: no station {name!r}", file=err, flush=True)
    return 1 if missing else 0


def _print_station(station: Dict[str, Any], out: TextIO) -> None:
    print(f"station {station['name']}", file=out)
    for key in ("partitions", "retention", "storage", "replicas", "idempotency_window_ms", "messages", "bytes", "dead_letters"):
        print(f"  {key.replace('_', ' ')}: {station[key]}", file=out)
    rows = [(p["stream"], p["messages"], p["first_seq"], p["last_seq"]) for p in station["partition_details"]]
    print("\n".join("  " + line for line in format_table(("STREAM", "MESSAGES", "FIRST SEQ", "LAST SEQ"), rows).splitlines()), file=out)
    groups = station["consumer_groups"]
    if groups:
        rows = [(name, g["unread"], g["unacked"], g["redelivered"]) for name, g in sorted(groups.items())]
        table = format_table(("CONSUMER GROUP", "UNREAD", "UNACKED", "REDELIVERED"), rows)
        print("\n".join("  " + line for line in table.splitlines()), file=out)
    else:
        print("  consumer groups: none", file=out)
