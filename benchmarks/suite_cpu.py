"""Where the test suite's CPU time goes: a pytest plugin that records, per test item, the CPU seconds
of the pytest process (all its threads) and of the subprocesses it waited for, and a report of them.

    SUITE_CPU=/tmp/cpu PYTHONPATH=benchmarks make test PYTEST_FLAGS="-n 2 --dist loadfile -p suite_cpu"
    .venv/bin/python benchmarks/suite_cpu.py /tmp/cpu [--top 40]

Each pytest process (every xdist worker) writes SUITE_CPU.<pid>.json at the end of its session. An
item's time includes the setup of the fixtures it is the first to use, as pytest's --durations
does. Wall time tells how long the suite takes on two cores only through the CPU both workers
need: a test whose CPU halves is worth the same wherever it runs.
"""

import argparse
import collections
import glob
import json
import os
import resource
import time

import pytest

_records = []


def _cpu():
    """(CPU seconds of this process, CPU seconds of its waited-for children)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    own, children = _cpu()
    started = time.monotonic()
    yield
    own_after, children_after = _cpu()
    _records.append(dict(id=item.nodeid, own=own_after - own, children=children_after - children,
                         wall=time.monotonic() - started))


def pytest_sessionfinish(session):
    prefix = os.environ.get("SUITE_CPU")
    if prefix:
        with open(f"{prefix}.{os.getpid()}.json", "w") as handle:
            json.dump(_records, handle)


def report(prefix, top=40):
    """Prints the total, the CPU seconds per test file and the `top` items, from SUITE_CPU files."""
    records = [record for path in sorted(glob.glob(f"{prefix}.*.json")) for record in json.load(open(path))]
    if not records:
        raise SystemExit(f"no {prefix}.*.json files: run pytest with SUITE_CPU={prefix} -p suite_cpu first")
    total = sum(r["own"] + r["children"] for r in records)
    print(f"{len(records)} items: CPU {total / 60:.1f} min (pytest processes "
          f"{sum(r['own'] for r in records) / 60:.1f}, subprocesses {sum(r['children'] for r in records) / 60:.1f})")
    files = collections.Counter()
    for r in records:
        files[r["id"].split("::")[0]] += r["own"] + r["children"]
    print(f"\n{'CPU s':>7} {'share':>6}  file")
    for name, seconds in files.most_common():
        if seconds >= 1.0:
            print(f"{seconds:7.1f} {seconds / total:6.1%}  {name}")
    print(f"\n{'CPU s':>7} {'own':>6} {'subpr.':>6} {'wall':>6}  item")
    for r in sorted(records, key=lambda r: -(r["own"] + r["children"]))[:top]:
        print(f"{r['own'] + r['children']:7.1f} {r['own']:6.1f} {r['children']:6.1f} {r['wall']:6.1f}  {r['id']}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("prefix", help="the SUITE_CPU prefix the plugin wrote its files under")
    parser.add_argument("--top", type=int, default=40, help="items listed (default 40)")
    args = parser.parse_args(argv)
    report(args.prefix, args.top)


if __name__ == "__main__":
    main()
