#!/usr/bin/env python3
"""Two agents (two builds, or one build with two sets of arguments) against each other and
against no agent: nginx + `wrk -t2 -c50`, both agents with `--comm nginx`, rounds of
three runs (without, agent A, agent B) whose order rotates from round to round, so that a drift
of the host's speed weighs on all three alike. Prints each run and the median ratios. Use it to
tell whether a change helped: on this noisy VM, two separate overhead.py runs of the same code
can differ by more than the change.

    sudo python3 tools/bench/compare_agents.py --a /path/to/old/loupe --b build/loupe [--rounds 12]
    sudo python3 tools/bench/compare_agents.py --b-arg=--disable-hooks=sched_switch
"""
import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../../tests/e2e"))
import loupe_e2e  # noqa: E402
from loupe_e2e import Agent, Nginx  # noqa: E402
from overhead import wrk  # noqa: E402  (same load as overhead.py)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--a", default=loupe_e2e.LOUPE, help="loupe binary A (default: build/loupe)")
    ap.add_argument("--b", default=loupe_e2e.LOUPE, help="loupe binary B (default: build/loupe)")
    ap.add_argument("--a-arg", action="append", default=[], help="extra argument of agent A only")
    ap.add_argument("--b-arg", action="append", default=[], help="extra argument of agent B only")
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--path", default="/")
    ap.add_argument("--agent-arg", action="append", default=[], help="extra agent argument (both)")
    args = ap.parse_args()
    nginx = Nginx(workers=2)
    url = nginx.url(args.path)
    runs = {"none": [], "a": [], "b": []}
    orders = [("none", "a", "b"), ("a", "b", "none"), ("b", "none", "a"),
              ("none", "b", "a"), ("b", "a", "none"), ("a", "none", "b")]
    try:
        wrk(url, 2)  # warm-up
        for r in range(args.rounds):
            row = {}
            for which in orders[r % len(orders)]:
                agent = None
                if which != "none":
                    loupe_e2e.LOUPE = args.a if which == "a" else args.b
                    own = args.a_arg if which == "a" else args.b_arg
                    agent = Agent("--comm", "nginx", *args.agent_arg, *own)
                    agent.settle(1.0)
                row[which], _ = wrk(url, args.seconds)
                if agent:
                    agent.stop()
            for k, v in row.items():
                runs[k].append(v)
            print(f"round {r + 1}: none {row['none']:.0f}, A {row['a']:.0f} ({row['a'] / row['none']:.3f}), "
                  f"B {row['b']:.0f} ({row['b'] / row['none']:.3f}) req/s", flush=True)
    finally:
        nginx.stop()
    ra = [a / n for a, n in zip(runs["a"], runs["none"])]
    rb = [b / n for b, n in zip(runs["b"], runs["none"])]
    ba = [b / a for a, b in zip(runs["a"], runs["b"])]
    print(f"median ratio to no agent: A {statistics.median(ra):.3f}, B {statistics.median(rb):.3f}; "
          f"median B/A {statistics.median(ba):.3f} (B faster in {sum(x > 1 for x in ba)} of {len(ba)} rounds)")


if __name__ == "__main__":
    main()
