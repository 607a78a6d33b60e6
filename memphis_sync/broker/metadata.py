"""The control plane's metadata (stations, producers, consumers, schemas, DLS records) in JetStream.

The Memphis broker keeps this in PostgreSQL. Here it is one JetStream stream used as a small
key-value store: every record is a JSON message on the subject ``$memphis_sync_meta.<key>``, the
stream keeps only the last message per subject (``max_msgs_per_subject = 1``) and a delete is a
purge of that subject. Keeping it in JetStream rather than in a file gives three things at once:
it lives in the nats-server store directory (so it survives restarts exactly like the stations'
messages and consumer positions), it is replicated with the cluster, and several control-plane
instances (a queue group) see the same data.

Keys are dot-separated tokens built from internal names (``station.<internal>``,
``consumer.<internal station>.<id>``), so that a prefix lists a station's records. "Create if
absent" uses JetStream's ``Nats-Expected-Last-Subject-Sequence: 0`` check, which is atomic across
instances.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Dict, Final, Mapping, Optional

from memphis_sync.errors import MessageNotFoundError, StreamNameInUseError, WrongLastSequenceError
from memphis_sync.jetstream import JetStream

__all__ = ["MetadataStore", "METADATA_STREAM", "METADATA_PREFIX"]

logger = logging.getLogger(__name__)

#: The stream holding the control plane's records.
METADATA_STREAM: Final = "$memphis_sync_metadata"
#: Subject prefix of the records.
METADATA_PREFIX: Final = "$memphis_sync_meta"


class MetadataStore:
    """JSON records in a JetStream stream, by key. Thread-safe (stateless apart from the stream).

    Args:
        js: The JetStream context of the control plane's connection.
        replicas: Replicas of the metadata stream (the cluster size, up to 3).
    """

    def __init__(self, js: JetStream, *, replicas: int = 1) -> None:
        self._js = js
        self._replicas = replicas

    def ensure(self) -> None:
        """Create the metadata stream unless it exists (an existing one is kept as it is)."""
        config = {
            "name": METADATA_STREAM,
            "subjects": [f"{METADATA_PREFIX}.>"],
            "max_msgs_per_subject": 1,
            "storage": "file",
            "num_replicas": self._replicas,
            "description": "memphis-sync control plane metadata",
        }
        try:
            self._js.add_stream(config)
        except StreamNameInUseError:
            logger.debug("metadata stream exists with another configuration; keeping it")

    def _subject(self, key: str) -> str:
        return f"{METADATA_PREFIX}.{key}"

    def get(self, key: str) -> Optional[Dict[str, Any]]:
        """The record under ``key``, or None."""
        try:
            msg = self._js.get_msg(METADATA_STREAM, last_by_subject=self._subject(key))
        except MessageNotFoundError:
            return None
        record: Dict[str, Any] = json.loads(msg.data)
        return record

    def put(self, key: str, record: Mapping[str, Any], *, create_only: bool = False) -> bool:
        """Store ``record`` under ``key``.

        Args:
            create_only: Store only if ``key`` has no record yet (atomic).

        Returns:
            False if ``create_only`` and a record exists (nothing stored), else True.
        """
        data = json.dumps(record, separators=(",", ":")).encode()
        try:
            self._js.publish(self._subject(key), data, expected_last_subject_seq=0 if create_only else None)
        except WrongLastSequenceError:
            return False
        return True

    def delete(self, key: str) -> None:
        """Remove the record under ``key`` (nothing happens if there is none)."""
        self._js.api_request(f"STREAM.PURGE.{METADATA_STREAM}", {"filter": self._subject(key)})

    def delete_prefix(self, prefix: str) -> None:
        """Remove every record whose key starts with ``prefix + "."``."""
        self._js.api_request(f"STREAM.PURGE.{METADATA_STREAM}", {"filter": self._subject(prefix) + ".>"})

    def keys(self, prefix: str) -> Dict[str, int]:
        """The keys under ``prefix + "."`` (mapped to their stream sequence order is not kept)."""
        subjects: Dict[str, int] = {}
        offset = 0
        while True:
            data = self._js.api_request(
                f"STREAM.INFO.{METADATA_STREAM}", {"subjects_filter": self._subject(prefix) + ".>", "offset": offset}
            )
            page = (data.get("state") or {}).get("subjects") or {}
            subjects.update(page)
            total = int(data.get("total", 0) or 0)
            offset += len(page)
            if not page or offset >= total:
                break
        start = len(METADATA_PREFIX) + 1
        return {subject[start:]: count for subject, count in subjects.items()}

    def list(self, prefix: str) -> Dict[str, Dict[str, Any]]:
        """Every record under ``prefix + "."``, by key."""
        records: Dict[str, Dict[str, Any]] = {}
        for key in self.keys(prefix):
            record = self.get(key)
            if record is not None:
                records[key] = record
        return records
