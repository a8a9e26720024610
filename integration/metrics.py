#!/usr/bin/env python3
"""Reads berth's /metrics with the `prometheus-client` package's parsers.

    metrics.py check FILE CONTENT_TYPE
        Parses FILE (a /metrics body) with the parser for CONTENT_TYPE (the
        OpenMetrics one for application/openmetrics-text, else the Prometheus
        text-format one) and with the Prometheus text-format parser
        (text_string_to_metric_families) as well. Prints one "missing: ..." or
        "wrong: ..." line per metric of SPEC §8 that is absent, of the wrong
        type or with samples lacking its labels; exits 1 if any.
    metrics.py value FILE CONTENT_TYPE SAMPLE [LABEL=VALUE ...]
        Prints the sum of the samples named SAMPLE whose labels match, or
        "absent" when none does.
"""

import sys

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families as text_families

# SPEC §8: sample name -> (family type, labels every sample carries)
SPEC = {
    "berth_requests_total": ("counter", {"pool", "server", "code"}),
    "berth_request_duration_seconds": ("histogram", set()),
    "berth_connections_active": ("gauge", {"listener"}),
    "berth_tls_handshakes_total": ("counter", {"result"}),
    "berth_server_up": ("gauge", {"pool", "server"}),
    "berth_affinity_entries": ("gauge", {"pool"}),
    "berth_affinity_decisions_total": ("counter", {"pool", "result"}),
    "berth_affinity_purged_total": ("counter", {"pool"}),
    "berth_proxy_header_rejected_total": ("counter", {"listener", "reason"}),
    "berth_cert_expiry_timestamp_seconds": ("gauge", {"cert"}),
    "berth_log_lines_dropped_total": ("counter", set()),
}


def families(text, content_type):
    """The metric families, parsed as the Content-Type says."""
    if content_type.split(";")[0].strip() == "application/openmetrics-text":
        return list(openmetrics_families(text))
    return list(text_families(text))


def family_name(sample, typ):
    """Both parsers name a counter's family without `_total`."""
    if typ == "counter" and sample.endswith("_total"):
        return sample[: -len("_total")]
    return sample


def check(text, content_type):
    problems = []
    # The Prometheus text-format parser must read it too (it is the one most
    # tools embed); an exception here is the failure.
    list(text_families(text))
    by_name = {f.name: f for f in families(text, content_type)}
    for sample, (typ, labels) in SPEC.items():
        family = by_name.get(family_name(sample, typ))
        if family is None:
            problems.append(f"missing: {sample}")
            continue
        if family.type != typ:
            problems.append(f"wrong: {sample} is a {family.type}, not a {typ}")
        for s in family.samples:
            if s.name.endswith("_created"):
                continue
            if lacking := labels - set(s.labels) - {"le"}:
                problems.append(f"wrong: {s.name}{s.labels} lacks {sorted(lacking)}")
                break
    for line in problems:
        print(line)
    return 1 if problems else 0


def value(text, content_type, sample, wanted):
    total, seen = 0.0, False
    for family in families(text, content_type):
        for s in family.samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in wanted.items()):
                total += s.value
                seen = True
    print(("%d" % total if total == int(total) else repr(total)) if seen else "absent")
    return 0


def main(argv):
    if len(argv) >= 4 and argv[1] == "check":
        return check(open(argv[2]).read(), argv[3])
    if len(argv) >= 5 and argv[1] == "value":
        wanted = dict(arg.split("=", 1) for arg in argv[5:])
        return value(open(argv[2]).read(), argv[3], argv[4], wanted)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
