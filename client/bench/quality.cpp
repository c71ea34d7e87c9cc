// The quality harness runner: tasks JSONL in, per-case rows and per-(schedule, task, length)
// accuracy plus agreement metrics out as one JSON object.
#include "client/bench/quality.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "client/bench/args.h"
#include "engine/engine.h"

namespace slim::bench {
namespace {

using json = nlohmann::json;

struct Schedule {
  std::string name;
  PruningRequest request;  // mode off for dense
};

StatusOr<std::vector<json>> ReadJsonl(const std::string& path) {
  std::ifstream in(path);
  if (!in) return NotFoundError("cannot read " + path);
  std::vector<json> rows;
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty()) continue;
    json j = json::parse(line, nullptr, false);
    if (j.is_discarded()) return InvalidArgumentError(path + ":" + std::to_string(n) + ": not JSON");
    rows.push_back(std::move(j));
  }
  return rows;
}

std::vector<ChatMessage> Messages(const json& row) {
  std::vector<ChatMessage> m;
  for (const auto& x : row["messages"]) m.push_back({x["role"].get<std::string>(), x["content"].get<std::string>()});
  return m;
}

// The first integer in the answer text, or "".
std::string FirstNumber(const std::string& text) {
  static const std::regex re("[0-9]+");
  std::smatch m;
  return std::regex_search(text, m, re) ? m.str() : std::string();
}

// Log-softmax of logits (in double).
std::vector<double> LogSoftmax(const std::vector<float>& x) {
  double mx = -INFINITY;
  for (float v : x) mx = std::max(mx, static_cast<double>(v));
  double sum = 0.0;
  for (float v : x) sum += std::exp(v - mx);
  const double lse = mx + std::log(sum);
  std::vector<double> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = x[i] - lse;
  return out;
}

// --schedules "paper=10:0.25,20:0.125,28:0.0625;late=..." -> the schedules to compare, dense
// first; with include_after each schedule also runs with pruning after attention ("+after").
StatusOr<std::vector<Schedule>> ParseSchedules(const std::string& spec, int n_layers, bool include_after) {
  std::vector<Schedule> schedules = {{"dense", {}}};
  size_t start = 0;
  while (start < spec.size()) {
    size_t end = spec.find(';', start);
    if (end == std::string::npos) end = spec.size();
    std::string item = spec.substr(start, end - start);
    start = end + 1;
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    if (eq == std::string::npos) return InvalidArgumentError("--schedules: '" + item + "' is not name=layer:keep,...");
    Schedule s;
    s.name = item.substr(0, eq);
    s.request.mode = PruningMode::kExplicit;
    SLIM_ASSIGN_OR_RETURN(s.request.config, PruningConfig::Parse(item.substr(eq + 1)));
    SLIM_RETURN_IF_ERROR(s.request.config.Validate(n_layers).WithPrefix("--schedules " + s.name));
    schedules.push_back(s);
    if (include_after) {
      Schedule v = s;
      v.name += "+after";
      v.request.config.after_attention = true;
      schedules.push_back(v);
    }
  }
  return schedules;
}

// Agreement on plain documents: the first generated token and the KL divergence of the
// next-token distribution, dense vs each schedule, per document length.
StatusOr<json> DocAgreement(Engine& engine, const std::string& docs_path, const std::vector<Schedule>& schedules) {
  json agreement = json::array();
  SLIM_ASSIGN_OR_RETURN(std::vector<json> docs, ReadJsonl(docs_path));
  std::map<std::string, std::map<int64_t, std::pair<int, int>>> top1;  // schedule -> length -> (agree, n)
  std::map<std::string, std::map<int64_t, double>> kl;
  for (const json& d : docs) {
    SLIM_ASSIGN_OR_RETURN(std::vector<int32_t> ids, engine.TokenizeChat(Messages(d)));
    SLIM_ASSIGN_OR_RETURN(PrefillResult dense, engine.Prefill(1'000'000, ids));
    SLIM_RETURN_IF_ERROR(engine.Release(1'000'000));
    const std::vector<double> lp = LogSoftmax(dense.logits);
    const size_t dense_top = static_cast<size_t>(std::max_element(dense.logits.begin(), dense.logits.end()) - dense.logits.begin());
    for (size_t k = 1; k < schedules.size(); ++k) {
      SLIM_ASSIGN_OR_RETURN(PrefillResult pr, engine.Prefill(1'000'001, ids, schedules[k].request));
      SLIM_RETURN_IF_ERROR(engine.Release(1'000'001));
      const std::vector<double> lq = LogSoftmax(pr.logits);
      double d_kl = 0.0;
      for (size_t v = 0; v < lp.size(); ++v) d_kl += std::exp(lp[v]) * (lp[v] - lq[v]);
      const size_t top = static_cast<size_t>(std::max_element(pr.logits.begin(), pr.logits.end()) - pr.logits.begin());
      const int64_t L = d["length"].get<int64_t>();
      auto& t = top1[schedules[k].name][L];
      t.first += top == dense_top ? 1 : 0;
      t.second += 1;
      kl[schedules[k].name][L] += d_kl;
    }
  }
  for (const auto& [name, by_len] : top1)
    for (const auto& [L, t] : by_len)
      agreement.push_back({{"schedule", name}, {"length", L}, {"docs", t.second},
                           {"top1_agreement", static_cast<double>(t.first) / t.second},
                           {"mean_kl", kl[name][L] / t.second}});
  return agreement;
}

}  // namespace

Status CmdQuality(int argc, char** argv) {
  SLIM_ASSIGN_OR_RETURN(
      Args a, Args::Parse(argc, argv, 2,
                          {"model", "device", "threads", "tasks", "docs", "schedules", "max-tokens", "limit", "out",
                           "kv-tokens", "decode-budgets", "decode-select-layer", "decode-score"},
                          {"include-after-attention", "quiet"}));
  EngineOptions o;
  o.model = a.Str("model");
  if (o.model.empty() || !a.Has("tasks")) return InvalidArgumentError("--model and --tasks are required");
  if (a.Str("device", "cpu") == "cuda") o.backend.device = Device::kCuda;
  SLIM_ASSIGN_OR_RETURN(int64_t threads, a.Int("threads", 0, 0, 1024));
  o.backend.threads = static_cast<int>(threads);
  // KV capacity: the engine's own sizing unless given (a 30K-token case needs more than one
  // context of a small default).
  SLIM_ASSIGN_OR_RETURN(o.kv_tokens, a.Int("kv-tokens", 0, 0, int64_t{1} << 32));
  SLIM_ASSIGN_OR_RETURN(int64_t select_layer, a.Int("decode-select-layer", 0, 0, 1 << 16));
  o.decode_kv_select_layer = static_cast<int>(select_layer);
  SLIM_ASSIGN_OR_RETURN(o.decode_kv_score, ParseDecodeKvScore(a.Str("decode-score", "means")));
  SLIM_ASSIGN_OR_RETURN(auto engine, Engine::Create(o));
  const int n_layers = engine->config().n_layers;
  SLIM_ASSIGN_OR_RETURN(int64_t max_tokens, a.Int("max-tokens", 24, 1, 256));
  SLIM_ASSIGN_OR_RETURN(int64_t limit, a.Int("limit", 0, 0, 1 << 30));

  SLIM_ASSIGN_OR_RETURN(std::vector<Schedule> schedules,
                        ParseSchedules(a.Str("schedules", "default=" + engine->default_pruning().ToString()),
                                       n_layers, a.Flag("include-after-attention")));
  // --decode-budgets 512,1024: each schedule also decodes under those KV budgets ("name/kvN");
  // the document agreement compares prefills only, so the variants do not enter it.
  SLIM_ASSIGN_OR_RETURN(std::vector<int64_t> budgets, a.IntList("decode-budgets", ""));
  std::vector<Schedule> with_budgets;
  for (const Schedule& s : schedules) {
    with_budgets.push_back(s);
    for (int64_t b : budgets) {
      if (b <= 0) return InvalidArgumentError("--decode-budgets: budgets must be > 0 (0 is the plain run)");
      Schedule v = s;
      v.name += "/kv" + std::to_string(b);
      v.request.decode_kv_budget = b;
      with_budgets.push_back(v);
    }
  }

  SLIM_ASSIGN_OR_RETURN(std::vector<json> tasks, ReadJsonl(a.Str("tasks")));
  if (limit > 0 && static_cast<int64_t>(tasks.size()) > limit) tasks.resize(static_cast<size_t>(limit));
  json cases = json::array();
  // summary[schedule][task][length] = {correct, total, ttft_sum}
  struct Acc {
    int correct = 0, total = 0;
    double ttft = 0.0;
    int64_t tokens = 0;
    double kv_bytes = 0.0;
  };
  std::map<std::string, std::map<std::string, std::map<int64_t, Acc>>> summary;
  const auto t_start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < tasks.size(); ++i) {
    const json& row = tasks[i];
    SLIM_ASSIGN_OR_RETURN(std::vector<int32_t> ids, engine->TokenizeChat(Messages(row)));
    const std::string answer = row["answer"].get<std::string>();
    json out = {{"id", row["id"]}, {"task", row["task"]}, {"length", row["length"]}, {"depth", row["depth"]},
                {"prompt_tokens", ids.size()}, {"answer", answer}};
    for (const Schedule& s : with_budgets) {
      SamplingParams sp;
      StopParams st;
      st.max_tokens = static_cast<int32_t>(max_tokens);
      SLIM_ASSIGN_OR_RETURN(GenerateResult g, engine->Generate(ids, sp, st, nullptr, -1, s.request));
      const bool ok = FirstNumber(g.text) == answer;
      out[s.name] = {{"text", g.text}, {"correct", ok}, {"ttft_ms", g.ttft_ms}, {"kv_bytes", g.kv_bytes}};
      Acc& acc = summary[s.name][row["task"].get<std::string>()][row["length"].get<int64_t>()];
      acc.correct += ok ? 1 : 0;
      acc.total += 1;
      acc.ttft += g.ttft_ms;
      acc.tokens += static_cast<int64_t>(ids.size());
      acc.kv_bytes += static_cast<double>(g.kv_bytes);
    }
    cases.push_back(out);
    if (!a.Flag("quiet")) {
      const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
      std::fprintf(stderr, "\r[%zu/%zu] %.0f s  %s        ", i + 1, tasks.size(), el,
                   row["id"].get<std::string>().c_str());
    }
  }
  if (!a.Flag("quiet")) std::fprintf(stderr, "\n");

  json agreement = json::array();
  if (a.Has("docs")) {
    SLIM_ASSIGN_OR_RETURN(agreement, DocAgreement(*engine, a.Str("docs"), schedules));
  }

  json sum = json::array();
  for (const auto& [name, by_task] : summary)
    for (const auto& [task, by_len] : by_task)
      for (const auto& [L, acc] : by_len)
        sum.push_back({{"schedule", name}, {"task", task}, {"length", L}, {"correct", acc.correct},
                       {"total", acc.total}, {"accuracy", static_cast<double>(acc.correct) / acc.total},
                       {"mean_ttft_ms", acc.ttft / acc.total},
                       {"mean_prompt_tokens", static_cast<double>(acc.tokens) / acc.total},
                       {"mean_kv_bytes", acc.kv_bytes / acc.total}});
  json sched = json::array();
  for (const Schedule& s : with_budgets)
    sched.push_back({{"name", s.name}, {"schedule", s.request.mode == PruningMode::kOff ? "" : s.request.config.ToString()},
                     {"after_attention", s.request.config.after_attention},
                     {"decode_kv_budget", std::max<int64_t>(0, s.request.decode_kv_budget)}});
  json result = {{"engine", engine->Describe()}, {"schedules", sched}, {"summary", sum},
                 {"agreement", agreement}, {"cases", cases}};
  if (a.Has("out")) {
    std::ofstream f(a.Str("out"));
    if (!f) return NotFoundError("cannot write " + a.Str("out"));
    f << result.dump(1) << "\n";
  }
  result.erase("cases");
  std::cout << result.dump(1) << "\n";
  return OkStatus();
}

}  // namespace slim::bench
