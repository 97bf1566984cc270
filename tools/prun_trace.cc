#include "prun_trace.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <set>
#include <string>

namespace mpvm::prun {
namespace {

using nlohmann::json;

int64_t TsOf(const json& e) {
  if (e.contains("ts")) return e["ts"].get<int64_t>();
  if (e.contains("freeze_ns")) return e["freeze_ns"].get<int64_t>();
  return 0;
}

// Builds the trace: the events indexed once, then each task's track.
class TraceBuilder {
 public:
  explicit TraceBuilder(const std::vector<json>& events) {
    for (const auto& e : events) {
      if (int64_t t = TsOf(e); t > 0)
        t0_ = std::min(t0_,
                       e.contains("request_ns") ? std::min(t, e["request_ns"].get<int64_t>()) : t);
      t_end_ = std::max(t_end_, TsOf(e));
      Index(e);
    }
  }

  json Build() {
    for (auto& [tid, evs] : by_task_) Track(tid, evs);
    for (const auto& [h, pid] : host_pid_)
      out_.push_back(
          {{"name", "process_name"}, {"ph", "M"}, {"pid", pid}, {"args", {{"name", h}}}});
    return json{{"traceEvents", out_}, {"displayTimeUnit", "ms"}};
  }

 private:
  void Index(const json& e) {
    const std::string ev = e.value("ev", "");
    if (ev == "forwarding") {
      forwarding_[e.value("id", "")] = &e;
      return;
    }
    if (ev == "resumed") resumed_at_[e.value("id", "")] = e["ts"].get<int64_t>();
    if (ev == "start") a_out_[e.value("tid", "")] = e.value("a_out", "");
    by_task_[e.value("tid", "")].push_back(&e);
  }

  double Us(int64_t ns) const { return static_cast<double>(ns - t0_) / 1000.0; }
  int PidOf(const std::string& host) {
    return host_pid_.emplace(host, static_cast<int>(host_pid_.size()) + 1).first->second;
  }

  // One task: a slice per stay on a host, and each migration.
  void Track(const std::string& tid, std::vector<const json*>& evs) {
    std::stable_sort(evs.begin(), evs.end(),
                     [](const json* a, const json* b) { return TsOf(*a) < TsOf(*b); });
    thread_ = static_cast<int>(std::strtol(tid.c_str() + 1, nullptr, 16));
    name_ = tid;
    if (auto it = a_out_.find(tid); it != a_out_.end() && !it->second.empty())
      name_ += " " + it->second.substr(it->second.rfind('/') + 1);
    named_.clear();
    host_.clear();
    since_ = 0;
    for (const json* e : evs) {
      const std::string ev = e->value("ev", "");
      if (ev == "start") {
        host_ = e->value("host", "");
        since_ = TsOf(*e);
        NameThread(host_);
      } else if (ev == "migration") {
        Migration(*e);
      } else if (ev == "end") {
        Slice(e->value("host", host_), since_, TsOf(*e));
        host_.clear();
      }
    }
    Slice(host_, since_, t_end_);  // still running when the run ended
  }

  void Migration(const json& e) {
    const std::string from = e.value("from", ""), to = e.value("to", "");
    const int64_t freeze = e["freeze_ns"].get<int64_t>();
    const int64_t restored = e["restored_ns"].get<int64_t>();
    const std::string id = e.value("id", "");
    Slice(from.empty() ? host_ : from, since_, freeze);
    json args = e;
    args.erase("ev");
    if (auto fw = forwarding_.find(id); fw != forwarding_.end())
      args["forwarded_later"] = fw->second->value("forwarded", 0);  // after the commit
    if (resumed_at_.contains(id)) args["resume_ns"] = resumed_at_[id];
    NameThread(from);
    NameThread(to);
    Complete("migrate to " + to, "migration", from, freeze, restored, std::move(args));
    // The copy runs from the commit on (it re-enrols with its new daemon at
    // its next PVM call: resume_ns). An arrow from the freeze to there.
    const int64_t resume = e.value("commit_ns", restored);
    ++flow_;
    out_.push_back({{"name", "migration"},
                    {"cat", "migration"},
                    {"ph", "s"},
                    {"id", flow_},
                    {"pid", PidOf(from)},
                    {"tid", thread_},
                    {"ts", Us(freeze)}});
    out_.push_back({{"name", "migration"},
                    {"cat", "migration"},
                    {"ph", "f"},
                    {"bp", "e"},
                    {"id", flow_},
                    {"pid", PidOf(to)},
                    {"tid", thread_},
                    {"ts", Us(resume)}});
    host_ = to;
    since_ = resume;
  }

  // A complete event ("X") on host h's track of the current task.
  void Complete(const std::string& title, const char* cat, const std::string& h, int64_t from,
                int64_t to, json args) {
    out_.push_back({{"name", title},
                    {"cat", cat},
                    {"ph", "X"},
                    {"pid", PidOf(h)},
                    {"tid", thread_},
                    {"ts", Us(from)},
                    {"dur", Us(to) - Us(from)},
                    {"args", std::move(args)}});
  }
  void Slice(const std::string& h, int64_t from, int64_t to) {
    if (!h.empty() && to >= from) Complete(name_, "task", h, from, to, {{"host", h}});
  }
  void NameThread(const std::string& h) {
    if (!named_.insert(h).second) return;
    out_.push_back({{"name", "thread_name"},
                    {"ph", "M"},
                    {"pid", PidOf(h)},
                    {"tid", thread_},
                    {"args", {{"name", name_}}}});
  }

  int64_t t0_ = INT64_MAX, t_end_ = 0;
  std::map<std::string, int> host_pid_;
  std::map<std::string, std::string> a_out_;
  std::map<std::string, std::vector<const json*>> by_task_;
  std::map<std::string, const json*> forwarding_;  // by move id
  std::map<std::string, int64_t> resumed_at_;      // by move id
  json out_ = json::array();
  int flow_ = 0;
  // The task being drawn.
  int thread_ = 0;
  std::string name_, host_;
  int64_t since_ = 0;
  std::set<std::string> named_;
};

}  // namespace

json ChromeTrace(const std::vector<json>& events) { return TraceBuilder(events).Build(); }

}  // namespace mpvm::prun
