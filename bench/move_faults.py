#!/usr/bin/env python3
"""Fault injection at random moments of a move, many trials: the table in
docs/design/migration.md ("Faults at a random moment"). Each trial is
tests/integration/move_faults.py's: a task streaming with a partner on a
third host is moved while its source daemon, its destination daemon or the
restoring process is killed, or the destination is stopped past the
failure timeout, at a uniformly random moment in the first DELAY seconds.
usage: move_faults.py BUILD_DIR [TRIALS] [SEED] [DELAY]"""
import collections
import os
import random
import sys
import time
import unittest

BUILD = os.path.abspath(sys.argv[1])
TRIALS = int(sys.argv[2]) if len(sys.argv) > 2 else 20
SEED = int(sys.argv[3]) if len(sys.argv) > 3 else int(time.time())
DELAY = float(sys.argv[4]) if len(sys.argv) > 4 else 0.8
os.environ["MPVM_BUILD"] = BUILD
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))

import move_faults  # noqa: E402  (needs MPVM_BUILD and the path above)
from test_migrate_faults import MigrateFaultTest  # noqa: E402


class Trials(MigrateFaultTest):
    results = collections.defaultdict(collections.Counter)
    bad = []

    def test_trials(self):
        rng = random.Random(SEED)
        for fault in move_faults.FAULTS:
            for n in range(TRIALS):
                delay = rng.uniform(0.0, DELAY)
                what, ok, secs = move_faults.trial(self, fault, delay)
                self.results[fault][what] += 1
                if not ok:
                    self.bad.append((fault, n, round(delay, 3), what))
                print(f"{fault:17} {n:3} delay {delay:.3f} s: {what} ({secs:.1f} s)",
                      file=sys.stderr, flush=True)
                self.tearDown()
                self.setUp()


def main():
    unittest.main(argv=["move_faults", "Trials.test_trials"], exit=False, verbosity=0)
    outcomes = sorted({w for c in Trials.results.values() for w in c})
    print(f"\nFaults at a random moment of a move ({TRIALS} trials each, seed {SEED}, "
          f"fault within {DELAY} s of the request)\n")
    print("| fault | " + " | ".join(outcomes) + " |")
    print("|---|" + "---:|" * len(outcomes))
    for fault in move_faults.FAULTS:
        print(f"| {fault} | " + " | ".join(str(Trials.results[fault][w]) for w in outcomes) + " |")
    print("\nnot allowed:", Trials.bad or "none")


if __name__ == "__main__":
    main()
