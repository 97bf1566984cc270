#include "prun_trace.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <set>
#include <string>

namespace mpvm::prun {

using nlohmann::json;

json ChromeTrace(const std::vector<json>& events) {
  int64_t t0 = INT64_MAX;
  auto ts_of = [](const json& e) -> int64_t {
    if (e.contains("ts")) return e["ts"].get<int64_t>();
    if (e.contains("freeze_ns")) return e["freeze_ns"].get<int64_t>();
    return 0;
  };
  for (const auto& e : events)
    if (int64_t t = ts_of(e); t > 0)
      t0 = std::min(t0, e.contains("request_ns") ? std::min(t, e["request_ns"].get<int64_t>()) : t);
  int64_t t_end = 0;
  for (const auto& e : events) t_end = std::max(t_end, ts_of(e));
  auto us = [&](int64_t ns) { return static_cast<double>(ns - t0) / 1000.0; };
  std::map<std::string, int> host_pid;
  auto pid_of = [&](const std::string& host) {
    auto [it, fresh] = host_pid.emplace(host, static_cast<int>(host_pid.size()) + 1);
    return it->second;
  };
  std::map<std::string, std::string> a_out;
  std::map<std::string, std::vector<const json*>> by_task;
  std::map<std::string, const json*> forwarding;  // by move id
  std::map<std::string, int64_t> resumed_at;      // by move id
  for (const auto& e : events) {
    const std::string ev = e.value("ev", "");
    if (ev == "forwarding") {
      forwarding[e.value("id", "")] = &e;
      continue;
    }
    if (ev == "resumed") resumed_at[e.value("id", "")] = e["ts"].get<int64_t>();
    if (ev == "start") a_out[e.value("tid", "")] = e.value("a_out", "");
    by_task[e.value("tid", "")].push_back(&e);
  }
  json out = json::array();
  int flow = 0;
  for (auto& [tid, evs] : by_task) {
    std::stable_sort(evs.begin(), evs.end(),
                     [&](const json* a, const json* b) { return ts_of(*a) < ts_of(*b); });
    const int thread = static_cast<int>(std::strtol(tid.c_str() + 1, nullptr, 16));
    std::string name = tid;
    if (auto it = a_out.find(tid); it != a_out.end() && !it->second.empty())
      name += " " + it->second.substr(it->second.rfind('/') + 1);
    std::string host;
    int64_t since = 0;
    // A complete event ("X") on host h's track of this task.
    auto complete = [&](const std::string& title, const char* cat, const std::string& h,
                        int64_t from, int64_t to, json args) {
      out.push_back({{"name", title},
                     {"cat", cat},
                     {"ph", "X"},
                     {"pid", pid_of(h)},
                     {"tid", thread},
                     {"ts", us(from)},
                     {"dur", us(to) - us(from)},
                     {"args", std::move(args)}});
    };
    auto slice = [&](const std::string& h, int64_t from, int64_t to) {
      if (!h.empty() && to >= from) complete(name, "task", h, from, to, {{"host", h}});
    };
    std::set<std::string> named;
    auto name_thread = [&](const std::string& h) {
      if (!named.insert(h).second) return;
      out.push_back({{"name", "thread_name"},
                     {"ph", "M"},
                     {"pid", pid_of(h)},
                     {"tid", thread},
                     {"args", {{"name", name}}}});
    };
    for (const json* e : evs) {
      const std::string ev = e->value("ev", "");
      if (ev == "start") {
        host = e->value("host", "");
        since = ts_of(*e);
        name_thread(host);
      } else if (ev == "migration") {
        const std::string from = e->value("from", ""), to = e->value("to", "");
        const int64_t freeze = (*e)["freeze_ns"].get<int64_t>();
        const int64_t restored = (*e)["restored_ns"].get<int64_t>();
        const std::string id = e->value("id", "");
        slice(from.empty() ? host : from, since, freeze);
        json args = *e;
        args.erase("ev");
        if (auto fw = forwarding.find(id); fw != forwarding.end()) {
          args["forwarded_later"] = fw->second->value("forwarded", 0);  // after the commit
        }
        if (resumed_at.contains(id)) args["resume_ns"] = resumed_at[id];
        name_thread(from);
        name_thread(to);
        complete("migrate to " + to, "migration", from, freeze, restored, std::move(args));
        // The copy runs from the commit on (it re-enrols with its new daemon
        // at its next PVM call: resume_ns).
        const int64_t resume = e->value("commit_ns", restored);
        out.push_back({{"name", "migration"},
                       {"cat", "migration"},
                       {"ph", "s"},
                       {"id", ++flow},
                       {"pid", pid_of(from)},
                       {"tid", thread},
                       {"ts", us(freeze)}});
        out.push_back({{"name", "migration"},
                       {"cat", "migration"},
                       {"ph", "f"},
                       {"bp", "e"},
                       {"id", flow},
                       {"pid", pid_of(to)},
                       {"tid", thread},
                       {"ts", us(resume)}});
        host = to;
        since = resume;
      } else if (ev == "end") {
        slice(e->value("host", host), since, ts_of(*e));
        host.clear();
      }
    }
    slice(host, since, t_end);  // still running when the run ended
  }
  for (const auto& [h, pid] : host_pid)
    out.push_back({{"name", "process_name"}, {"ph", "M"}, {"pid", pid}, {"args", {{"name", h}}}});
  return json{{"traceEvents", out}, {"displayTimeUnit", "ms"}};
}

}  // namespace mpvm::prun
