// oracle.h — what a balancer could reach: three finish times for a set of
// CPU-bound tasks on hosts of given speeds, the "Optimal" columns the load
// experiments are judged against.
//
// Sources. The MOSIX + PVM paper (M §4.1, Table 1: 16 equal hosts, N tasks of
// 300 s each, all started together) and the project's digest of it,
// ../shared/seed-digest.md §2.1 (anchor A1) and §2.5 (the emulator and its
// oracle).
//
// The machine model, shared by all three. Host i has speed s_i in PVM sp=
// units (1000 = one reference CPU), so its rate is r_i = s_i / 1000; task j
// needs d_j seconds of work at speed 1000. Every task starts at time 0 and
// none blocks. A host shares its CPU equally among its tasks (processor
// sharing): with n tasks, each advances at r_i / n. All three functions
// return the finish time of the last task, in seconds.
//
//   RoundRobinTime  PVM's default placement, no migration: task j runs on
//                   host j mod H, hosts in the given order. Simulated event
//                   by event: when a task ends, its host's survivors speed up.
//                   For equal hosts and works: ceil(N / H) * W (M's PVM column).
//   StaircaseTime   the "Optimal" column of M Table 1: whole-task migration
//                   that costs nothing but happens only when the load gap is
//                   more than one task. Start balanced: tasks by decreasing
//                   work, each to the host where it would run fastest, least
//                   (n + 1) / s (of equals, the faster host, then the first).
//                   Whenever tasks end, move tasks one at a time while a move
//                   from A to B strictly helps the moved task,
//                   (n_B + 1) / s_B < n_A / s_A. B is that least-(n + 1) / s
//                   host; the task is the eligible one with the most work
//                   left (then from the most loaded host, then the first).
//                   A moved task keeps its work left. Every row of Table 1
//                   comes out, 17 tasks -> 450 s, 43 -> 833.33 s, but N = 31
//                   gives 581.25 s, not the paper's 563 (below the fluid
//                   bound: that row is inconsistent, digest §2.7).
//                   Counts only, no swaps: with unequal works a clairvoyant
//                   schedule may do better, so it is no lower bound.
//   FluidBound      the preemptive lower bound, no schedule beats it:
//                   max(max_j d_j / max_i r_i, sum_j d_j / sum_i r_i).
//
// Background load (digest E4): another user's work that no balancer can
// move, per host, as the mean number of its processes ready to run, b_h.
// Its count at any moment is floor(b_h) or ceil(b_h), the latter a
// fraction frac(b_h) of the time, switching often compared with the tasks
// (E4's busy loop runs and rests for U(0, 0.2) s against 2 s tasks: b =
// 0.5). With n of our tasks and k background processes a host gives each of
// ours r_i / (n + k): over time, r_i * E[1 / (n + K)]. RoundRobinTime and
// StaircaseTime use those rates, and the staircase compares hosts by time
// per unit of work, 1 / (r_i * E[1 / (n + K)]), which is n / r_i without
// background. FluidBound ignores it (enough tasks crowd a background
// process out), so it stays a lower bound, a looser one.
//
// Inputs. Every speed must be > 0 and every work finite and >= 0 (IsValid);
// the functions return NaN otherwise, and for tasks with no host. No tasks
// at all take 0 s.
#pragma once

#include <optional>
#include <string_view>
#include <vector>

namespace mpvm::balancer {

struct OracleInput {
  std::vector<int> speeds;   // per host, PVM sp= (1000 = reference CPU)
  std::vector<double> work;  // per task, seconds of work at speed 1000
  // Per host, the mean background processes ready to run (empty: none;
  // else one value per host, each finite and >= 0).
  std::vector<double> background = {};
};

struct OracleTimes {
  double round_robin = 0;
  double staircase = 0;
  double fluid = 0;
};

bool IsValid(const OracleInput& in);

double RoundRobinTime(const OracleInput& in);
double StaircaseTime(const OracleInput& in);
double FluidBound(const OracleInput& in);
OracleTimes AllTimes(const OracleInput& in);

// A list written "VALUE[xCOUNT],...": "1000x16,333x4" is sixteen 1000s then
// four 333s; "300,120" is two values. Empty text is an empty list. Nullopt
// when malformed or longer than a million values.
std::optional<std::vector<double>> ParseCountedList(std::string_view text);

}  // namespace mpvm::balancer
