#!/usr/bin/env python3
"""Checks the observers' output against docs/observability.schema.json.

Runs the sample program (tests/tools/observers_sample.cpp) twice: its JSON lines
must each validate against the schema and cover every event kind; its trace export
must parse as JSON in the Chrome trace-event shape. With --doc, the example lines of
the document's "JSON lines" section must validate too and cover every kind. Exit 77 (CTest skip) when the
jsonschema module is missing (Debian: python3-jsonschema).
"""
import argparse
import json
import subprocess
import sys

KINDS = {
    "created", "canceled", "propagated", "observed", "component_signal",
    "component_cleanup", "cleanup_report", "blocking_abandoned", "lease_lingering",
    "finding",
}


def fail(message):
    print(f"FAIL: {message}")
    sys.exit(1)


def check_lines(schema, sample):
    import jsonschema

    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema)
    output = subprocess.run([sample], check=True, capture_output=True).stdout
    # Strict UTF-8: the observer promises valid UTF-8 whatever the input bytes.
    lines = output.decode("utf-8").splitlines()
    if len(lines) != 2 * len(KINDS):
        fail(f"expected {2 * len(KINDS)} lines, got {len(lines)}")
    seen = set()
    for number, line in enumerate(lines, 1):
        event = json.loads(line)
        errors = sorted(validator.iter_errors(event), key=lambda e: list(e.path))
        if errors:
            for error in errors:
                print(f"line {number}: {'/'.join(map(str, error.path))}: {error.message}")
            fail(f"line {number} does not match the schema: {line}")
        seen.add(event["event"])
    if seen != KINDS:
        fail(f"event kinds missing from the sample: {sorted(KINDS - seen)}")
    # The schema must reject what it promises to reject.
    broken = json.loads(lines[0])
    del broken["detail"]
    if validator.is_valid(broken):
        fail("the schema accepts a line without 'detail'")
    print(f"{len(lines)} lines match {len(KINDS)} event kinds")


def check_doc(schema, doc):
    import jsonschema

    validator = jsonschema.validators.validator_for(schema)(schema)
    with open(doc, encoding="utf-8") as f:
        text = f.read()
    start = text.find("\n## JSON lines")
    end = text.find("\n## ", start + 1)
    if start < 0:
        fail(f"{doc} has no '## JSON lines' section")
    lines = [line for line in text[start:end].splitlines() if line.startswith('{"event"')]
    seen = set()
    for line in lines:
        event = json.loads(line)
        for error in validator.iter_errors(event):
            fail(f"{doc}: example does not match the schema ({error.message}): {line}")
        seen.add(event["event"])
    if seen != KINDS:
        fail(f"{doc}: no example line for {sorted(KINDS - seen)}")
    print(f"{len(lines)} example lines in {doc} match")


def check_trace(sample):
    output = subprocess.run([sample, "--trace"], check=True, capture_output=True).stdout
    trace = json.loads(output.decode("utf-8"))
    if trace.get("displayTimeUnit") != "ms" or not isinstance(trace.get("traceEvents"), list):
        fail("trace export is not {traceEvents:[...], displayTimeUnit:'ms'}")
    phases = {}
    for event in trace["traceEvents"]:
        for key in ("name", "ph", "pid", "tid"):
            if key not in event:
                fail(f"trace event without '{key}': {event}")
        phases[event["ph"]] = phases.get(event["ph"], 0) + 1
        if event["ph"] == "X" and not (isinstance(event["dur"], (int, float)) and event["dur"] >= 0):
            fail(f"complete event without a valid dur: {event}")
        if event["ph"] == "i" and event.get("s") != "t":
            fail(f"instant event not thread-scoped: {event}")
    # 9 kinds kept twice (created is not exported): 4 span kinds, 5 instant kinds.
    if phases.get("X") != 8 or phases.get("i") != 10 or phases.get("M", 0) < 2:
        fail(f"unexpected phases in the trace export: {phases}")
    print(f"trace export parses: {phases}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--schema", required=True)
    parser.add_argument("--sample", required=True)
    parser.add_argument("--doc")
    args = parser.parse_args()
    with open(args.schema, encoding="utf-8") as f:
        schema = json.load(f)
    check_trace(args.sample)
    try:
        import jsonschema  # noqa: F401
    except ImportError:
        print("CTXPP_TEST_SKIPPED: the jsonschema module is missing (Debian: python3-jsonschema)")
        sys.exit(77)
    check_lines(schema, args.sample)
    if args.doc:
        check_doc(schema, args.doc)


if __name__ == "__main__":
    main()
