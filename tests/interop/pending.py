"""MQTT 5.0 scenarios whose feature the broker under test (shardmq) does not implement yet.

paho_v5.py leaves these to paho_v5_pending.py, whose failures are reported, not asserted, by
tests/it/interop_paho.rs. Remove a name here as soon as the feature lands: it is then asserted.
Each entry is listed in FINDINGS.md as pending.
"""

PENDING = {
    # What the Paho suite (client_test5.py) asserts beyond the specification.
    "paho_suite_nosubscribe_topic",
}
