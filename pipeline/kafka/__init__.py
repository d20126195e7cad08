"""Kafka plumbing: the embedded broker, topic creation, client factories and the feature probe.

    broker.py   EmbeddedBroker: the bundled tansu broker as a subprocess on loopback
    topics.py   ensure_topics: create the data-flow topics (idempotent)
    clients.py  make_producer / make_consumer / make_admin from Settings; start_client and broker_errors
                translate aiokafka errors into BrokerError
    probe.py    probe_features: which Kafka features the configured broker really supports
"""

from pipeline.kafka.broker import EmbeddedBroker
from pipeline.kafka.clients import (
                                     broker_errors,
                                     connection_options,
                                     make_admin,
                                     make_consumer,
                                     make_producer,
                                     start_client,
)
from pipeline.kafka.probe import FeatureResult, probe_features
from pipeline.kafka.topics import delete_topics, ensure_topics

__all__ = [
    "EmbeddedBroker",
    "FeatureResult",
    "broker_errors",
    "connection_options",
    "delete_topics",
    "ensure_topics",
    "make_admin",
    "make_consumer",
    "make_producer",
    "probe_features",
    "start_client",
]
