#!/usr/bin/env python3
"""MQTT 5.0 scenarios for features the broker under test does not implement yet (pending.py).

Same scenarios, same checks as paho_v5.py; only the selection differs. The Rust test that runs
this script reports its failures without failing, until the feature lands and the name leaves
pending.py (then paho_v5.py asserts it).

Usage: paho_v5_pending.py --port N [--host 127.0.0.1] [--shards-hint S] [--only REGEX]
"""

import sys

sys.dont_write_bytecode = True  # leave no __pycache__ in the source tree

import paho_v5
from pending import PENDING

if __name__ == "__main__":
    known = {name for name, _, _ in paho_v5.suite.scenarios}
    unknown = sorted(PENDING - known)
    if unknown:
        raise SystemExit("FAIL setup: pending.py names unknown scenarios: %s" % unknown)
    paho_v5.suite.main(sorted(PENDING), banner="paho_v5_pending.py")
