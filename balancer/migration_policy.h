// migration_policy.h — which running tasks to move, and where: the
// balancer's refinement of placement by preemptive migration (MOSIX-style).
//
// Decide is a pure function of a load snapshot, the limits and the time; the
// master's load service calls it and the daemon carries the orders out.
//
// The CPU rule. A host's expected time per unit of work for one of `n`
// runnable tasks is T(n) = max(1, n / cores) / speed. n is the host's
// demand: the sum of its tasks' ready fractions (a task that waits for
// messages half of the time counts a half), those spawned and not reported
// yet, and background load. A task moves from the host A with the highest
// T(n_A) to the host B with the lowest T(n_B + 1) when
//   T(n_B + 1) < T(n_A) * (1 - margin),
// when B would have fewer whole tasks for its speed than A has, k:
//   T(k_B + 1) < T(k_A),
// and when the move pays for itself: the task's age (the usual guess of
// what it still has to run) times the relative gain exceeds the move's
// cost, overhead + image_bytes / bandwidth. k counts pending tasks,
// background load and the active tasks (ready a fifth of the time or
// more): whole if they exchange messages, else for the time they are
// ready. The whole-task test keeps tasks that wait for each other (a ring,
// whose waits move from host to host) from drawing moves on a difference
// of waits alone; a task that talks to no one and rests by itself leaves
// the rest of its time to others. Candidates are ready at least half the
// time, not pinned, at least min_age old and min_residency past their last
// move and their last failed one. Of the candidates, the one with the most
// traffic towards B's tasks (and least towards A's) goes first, then the
// smallest image. Orders are applied to the snapshot as they are made, and
// at most max_in_flight moves run at once.
//
// Back-off. When every host has `overload` runnable tasks per core or more,
// a move gains little (one task of many) and costs more (its capture and
// restore share the busy CPUs): a decision orders one move at most, and
// only for twice the margin.
//
// The communication rule, when the CPU rule ordered nothing. A task that
// exchanges at least `chatty` bytes/s more with another host's tasks than
// with its own host's (both directions of each pair summed) joins them
// when the CPU there has room (with it, that host's T is no higher than its
// own host's now); else it trades places with a task there of about the
// same demand, on a host of the same speed, when the trade leaves the
// busier of the two hosts no busier and brings more traffic together than
// it parts.
#pragma once

#include <string>
#include <vector>

#include "cluster_load.h"

namespace mpvm::balancer {

struct Limits {
  double margin = 0.1;               // relative improvement a move must bring
  Time min_age = 1 * kSecond;        // young tasks often end soon
  Time min_residency = 2 * kSecond;  // after a spawn or a move
  int max_in_flight = 2;             // moves running at once, cluster-wide
  int moves_in_flight = 0;           // moves running now
  double bandwidth = 1e9;            // bytes/s of a move, as measured
  Time move_overhead = 20'000'000;   // fixed cost of a move, as measured
  double chatty = 256 * 1024;        // bytes/s more with another host's tasks than
                                     // with its own that make a task worth bringing there
  // The cluster is overloaded when every host has at least this many
  // runnable tasks per core. Balancing then backs off (R45, E10): one move
  // per decision, and twice the margin.
  double overload = 4;
};

struct MoveOrder {
  int tid = 0;
  int from = 0, to = 0;  // host indices
  std::string reason;    // for the log and the trace
};

std::vector<MoveOrder> Decide(const ClusterLoad& load, const Limits& limits, Time now);

// T(n) above, for host `h` with `n` runnable tasks.
double TimePerWork(const HostLoad& h, double n);

}  // namespace mpvm::balancer
