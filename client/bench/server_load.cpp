// `sliminfer-bench server`: C concurrent streams issue N Generate calls in all (closed loop), or
// N calls arrive as a Poisson process of --rate requests/s (open loop), with prompts of exact
// token lengths cut from real English text (tokenized by the server), greedy decoding of
// exactly --max-tokens tokens; reports client-side TTFT, inter-token latency and end-to-end
// latency percentiles (also per prompt length of a mix), throughput, goodput at an SLO (TTFT
// and mean inter-token gap) and errors by status. Progress on stderr, one JSON object on stdout.
#include "client/bench/server_load.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>
#include <vector>

#include "client/bench/args.h"
#include "client/cli/inference_client.h"

namespace slim::bench {
namespace {

namespace v1 = sliminfer::v1;
using json = nlohmann::json;

// Real English text: --text-file, else the license texts Debian and Ubuntu ship.
StatusOr<std::string> LoadText(const Args& a, size_t max_bytes) {
  std::vector<std::string> files;
  if (a.Has("text-file")) {
    files.push_back(a.Str("text-file"));
  } else {
    for (const char* f : {"GPL-3", "GPL-2", "LGPL-2.1", "Apache-2.0", "MPL-2.0", "GFDL-1.3", "Artistic", "LGPL-3"})
      files.push_back(std::string("/usr/share/common-licenses/") + f);
  }
  std::string text;
  for (const std::string& f : files) {
    std::ifstream in(f, std::ios::binary);
    if (!in) continue;
    std::stringstream ss;
    ss << in.rdbuf();
    text += ss.str() + "\n\n";
    if (text.size() >= max_bytes) break;
  }
  if (text.empty()) return NotFoundError("no benchmark text found (pass --text-file)");
  if (text.size() > max_bytes) {
    // Cut at a line end so no UTF-8 sequence is split.
    const size_t nl = text.rfind('\n', max_bytes);
    text.resize(nl == std::string::npos ? max_bytes : nl);
  }
  return text;
}

json Percentiles(std::vector<double> v) {
  if (v.empty()) return json(nullptr);
  std::sort(v.begin(), v.end());
  auto q = [&](double p) {
    const double pos = p * static_cast<double>(v.size() - 1);
    const size_t lo = static_cast<size_t>(pos);
    const size_t hi = std::min(lo + 1, v.size() - 1);
    return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
  };
  double sum = 0;
  for (double x : v) sum += x;
  return {{"mean", sum / static_cast<double>(v.size())}, {"p50", q(0.5)}, {"p90", q(0.9)}, {"p95", q(0.95)},
          {"p99", q(0.99)}, {"min", v.front()}, {"max", v.back()}, {"n", v.size()}};
}

struct Result {
  grpc::StatusCode code = grpc::StatusCode::OK;
  int prompt_tokens = 0;
  int output_tokens = 0;
  double ttft_ms = -1, e2e_ms = 0;
  std::vector<double> gaps_ms;
  double server_queue_ms = 0, server_prefill_ms = 0;
  int64_t kv_gpu_bytes = 0, kv_gpu_peak_bytes = 0;  // Finished: gpu-tier KV after the last token, most
};

class Progress {
 public:
  explicit Progress(int64_t total) : total_(total), t0_(std::chrono::steady_clock::now()) {}
  void Done(bool ok) {
    std::lock_guard<std::mutex> l(mu_);
    ++done_;
    if (!ok) ++failed_;
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
    const int width = 30;
    const int filled = static_cast<int>(width * done_ / std::max<int64_t>(total_, 1));
    std::string bar(static_cast<size_t>(filled), '=');
    bar.resize(width, ' ');
    std::fprintf(stderr, "\r[%s] %lld/%lld requests, %lld failed, %.1f s", bar.c_str(), static_cast<long long>(done_),
                 static_cast<long long>(total_), static_cast<long long>(failed_), s);
    if (done_ == total_) std::fputc('\n', stderr);
    std::fflush(stderr);
  }

 private:
  std::mutex mu_;
  int64_t total_, done_ = 0, failed_ = 0;
  std::chrono::steady_clock::time_point t0_;
};

// One token stream from real text (tokenized by the server), at least 2 * max_len tokens long
// (repeated if need be), so that prompts of every length are distinct windows of it.
StatusOr<std::vector<int32_t>> TokenStream(const Args& a, v1::Inference::Stub& stub, int64_t max_len) {
  SLIM_ASSIGN_OR_RETURN(std::string text, LoadText(a, static_cast<size_t>(max_len) * 8 + 65536));
  grpc::ClientContext ctx;
  client::AddApiKey(&ctx);
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
  v1::TokenizeRequest req;
  req.set_text(text);
  v1::TokenizeResponse resp;
  grpc::Status s = stub.Tokenize(&ctx, req, &resp);
  if (!s.ok()) return Status(static_cast<StatusCode>(s.error_code()), "Tokenize: " + s.error_message());
  std::vector<int32_t> stream(resp.token_ids().begin(), resp.token_ids().end());
  if (stream.empty()) return InvalidArgumentError("the benchmark text tokenized to nothing");
  const size_t base = stream.size();
  while (static_cast<int64_t>(stream.size()) < 2 * max_len) stream.insert(stream.end(), stream.begin(), stream.begin() + base);
  return stream;
}

// Client-side latencies of successful requests.
struct Latencies {
  std::vector<double> ttft, itl, e2e, queue, prefill;
  int64_t ok = 0;
  void Add(const Result& r) {
    ++ok;
    if (r.ttft_ms >= 0) ttft.push_back(r.ttft_ms);
    itl.insert(itl.end(), r.gaps_ms.begin(), r.gaps_ms.end());
    e2e.push_back(r.e2e_ms);
    queue.push_back(r.server_queue_ms);
    prefill.push_back(r.server_prefill_ms);
  }
  void Into(json* j) const {
    (*j)["ttft_ms"] = Percentiles(ttft);
    (*j)["itl_ms"] = Percentiles(itl);
    (*j)["e2e_ms"] = Percentiles(e2e);
    (*j)["server_queue_ms"] = Percentiles(queue);
    (*j)["server_prefill_ms"] = Percentiles(prefill);
  }
};

// The run's outcome counts, throughput, goodput at the SLO, latency percentiles, and (for a mix
// of prompt lengths) the same latencies per length, e.g. the short streams' ITL while long
// prompts keep arriving.
json Report(const std::vector<Result>& results, double duration_s, double slo_ttft_ms, double slo_itl_ms) {
  std::map<std::string, int64_t> errors;
  Latencies all;
  std::map<int64_t, Latencies> by_length;
  int64_t out_tokens = 0, in_tokens = 0, good = 0;
  for (const Result& r : results) {
    if (r.code != grpc::StatusCode::OK) {
      ++errors[client::StatusCodeName(r.code)];
      continue;
    }
    all.Add(r);
    by_length[r.prompt_tokens].Add(r);
    double gap_sum = 0;
    for (double g : r.gaps_ms) gap_sum += g;
    const double mean_gap = r.gaps_ms.empty() ? 0.0 : gap_sum / static_cast<double>(r.gaps_ms.size());
    if (r.ttft_ms >= 0 && r.ttft_ms <= slo_ttft_ms && mean_gap <= slo_itl_ms) ++good;
    out_tokens += r.output_tokens;
    in_tokens += r.prompt_tokens;
  }
  json out = {{"duration_s", duration_s},
              {"ok", all.ok},
              {"errors", errors},
              {"output_tokens", out_tokens},
              {"throughput",
               {{"requests_per_s", static_cast<double>(all.ok) / duration_s},
                {"output_tokens_per_s", static_cast<double>(out_tokens) / duration_s},
                {"prompt_tokens_per_s", static_cast<double>(in_tokens) / duration_s}}},
              {"slo", {{"ttft_ms", slo_ttft_ms}, {"mean_itl_ms", slo_itl_ms}}},
              {"goodput", {{"requests_meeting_slo", good}, {"requests_per_s", static_cast<double>(good) / duration_s}}}};
  all.Into(&out);
  if (by_length.size() > 1) {
    json per = json::object();
    for (const auto& [len, l] : by_length) {
      json j = {{"ok", l.ok}};
      l.Into(&j);
      per[std::to_string(len)] = std::move(j);
    }
    out["by_prompt_tokens"] = std::move(per);
  }
  return out;
}

}  // namespace

Status CmdServer(int argc, char** argv) {
  SLIM_ASSIGN_OR_RETURN(Args a, Args::Parse(argc, argv, 2,
                                            {"server", "concurrency", "requests", "prompt-tokens", "max-tokens",
                                             "pruning", "text-file", "timeout", "warmup", "rate", "seed",
                                             "slo-ttft-ms", "slo-itl-ms", "decode-kv-budget"},
                                            {"json"}));
  const std::string target = a.Str("server", "localhost:50051");
  SLIM_ASSIGN_OR_RETURN(int64_t concurrency, a.Int("concurrency", 1, 1, 4096));
  SLIM_ASSIGN_OR_RETURN(int64_t requests, a.Int("requests", 32, 1, 10000000));
  SLIM_ASSIGN_OR_RETURN(std::vector<int64_t> lengths, a.IntList("prompt-tokens", "256"));
  SLIM_ASSIGN_OR_RETURN(int64_t max_tokens, a.Int("max-tokens", 32, 1, 1 << 20));
  SLIM_ASSIGN_OR_RETURN(double timeout_s, a.Float("timeout", 600.0, 0.0, 1e6));
  SLIM_ASSIGN_OR_RETURN(int64_t warmup, a.Int("warmup", 1, 0, 1000));
  SLIM_ASSIGN_OR_RETURN(double rate, a.Float("rate", 0.0, 0.0, 1e6));
  SLIM_ASSIGN_OR_RETURN(int64_t seed, a.Int("seed", 1, 0, 1LL << 40));
  SLIM_ASSIGN_OR_RETURN(double slo_ttft_ms, a.Float("slo-ttft-ms", 2000.0, 0.0, 1e9));
  SLIM_ASSIGN_OR_RETURN(double slo_itl_ms, a.Float("slo-itl-ms", 50.0, 0.0, 1e9));
  // -1: the server's --decode-kv-budget; else sent with every request (0 = every block).
  SLIM_ASSIGN_OR_RETURN(int64_t decode_kv_budget, a.Int("decode-kv-budget", -1, -1, int64_t{1} << 32));
  const std::string pruning = a.Str("pruning", "off");
  if (pruning != "off" && pruning != "default") return InvalidArgumentError("--pruning must be off or default");
  int64_t max_len = 0;
  for (int64_t l : lengths) {
    if (l < 1) return InvalidArgumentError("--prompt-tokens must be positive");
    max_len = std::max(max_len, l);
  }

  auto channel = client::MakeChannel(target);
  auto stub = v1::Inference::NewStub(channel);
  v1::ModelInfo info;
  {
    grpc::ClientContext ctx;
    client::AddApiKey(&ctx);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    grpc::Status s = stub->GetModelInfo(&ctx, v1::GetModelInfoRequest(), &info);
    if (!s.ok()) return Status(static_cast<StatusCode>(s.error_code()), "GetModelInfo: " + s.error_message());
  }
  SLIM_ASSIGN_OR_RETURN(const std::vector<int32_t> stream, TokenStream(a, *stub, max_len));
  auto make_request = [&](int64_t i) {
    const int64_t len = lengths[static_cast<size_t>(i) % lengths.size()];
    const int64_t span = static_cast<int64_t>(stream.size()) - len;
    const int64_t start = span > 0 ? (i * 7919) % span : 0;
    v1::GenerateRequest req;
    req.mutable_token_ids()->mutable_ids()->Assign(stream.begin() + start, stream.begin() + start + len);
    req.mutable_stopping()->set_max_tokens(static_cast<int32_t>(max_tokens));
    req.mutable_stopping()->set_ignore_eos(true);  // every request generates exactly max_tokens
    req.mutable_pruning()->set_mode(pruning == "default" ? v1::PruningOptions::MODE_DEFAULT
                                                         : v1::PruningOptions::MODE_OFF);
    if (decode_kv_budget >= 0) req.mutable_pruning()->set_decode_kv_budget(decode_kv_budget);
    return req;
  };
  for (int64_t w = 0; w < warmup; ++w) {
    client::GenerateOutcome o = client::RunGenerate(*stub, make_request(1000003 + w), timeout_s);
    if (!o.status.ok()) {
      return Status(static_cast<StatusCode>(o.status.error_code()), "warm-up request: " + o.status.error_message());
    }
  }

  std::vector<Result> results(static_cast<size_t>(requests));
  std::atomic<int64_t> next{0};
  Progress progress(requests);
  auto run_one = [&](int64_t i) {
    const v1::GenerateRequest req = make_request(i);
    client::GenerateOutcome o = client::RunGenerate(*stub, req, timeout_s);
    Result& r = results[static_cast<size_t>(i)];
    r.code = o.status.error_code();
    r.prompt_tokens = req.token_ids().ids_size();
    r.output_tokens = static_cast<int>(o.token_ids.size());
    r.ttft_ms = o.ttft_ms;
    r.e2e_ms = o.e2e_ms;
    r.gaps_ms = std::move(o.chunk_gaps_ms);
    r.server_queue_ms = o.finished.timings().queue_ms();
    r.server_prefill_ms = o.finished.timings().prefill_ms();
    r.kv_gpu_bytes = o.finished.kv_gpu_bytes();
    r.kv_gpu_peak_bytes = o.finished.kv_gpu_peak_bytes();
    progress.Done(o.status.ok());
  };
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> workers;
  if (rate > 0) {
    // Open loop: request i starts at the i-th arrival of a Poisson process, whatever the
    // server's state (each on its own thread).
    std::mt19937_64 rng(static_cast<uint64_t>(seed));
    std::exponential_distribution<double> gap(rate);
    double at = 0.0;
    for (int64_t i = 0; i < requests; ++i) {
      std::this_thread::sleep_until(t0 + std::chrono::duration<double>(at));
      workers.emplace_back(run_one, i);
      at += gap(rng);
    }
  } else {
    for (int64_t c = 0; c < std::min(concurrency, requests); ++c) {
      workers.emplace_back([&] {
        for (int64_t i = next++; i < requests; i = next++) run_one(i);
      });
    }
  }
  for (std::thread& t : workers) t.join();
  const double duration_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  json out = {{"server", target},
              {"model", info.name()},
              {"engine", info.description()},
              {"concurrency", rate > 0 ? json(nullptr) : json(concurrency)},
              {"rate_per_s", rate > 0 ? json(rate) : json(nullptr)},
              {"requests", requests},
              {"prompt_tokens", lengths},
              {"max_tokens", max_tokens},
              {"pruning", pruning},
              {"decode_kv_budget", decode_kv_budget >= 0 ? json(decode_kv_budget) : json(nullptr)}};
  out.update(Report(results, duration_s, slo_ttft_ms, slo_itl_ms));
  // Per request, from Finished: the gpu-tier KV after its last token (mean over the requests
  // that finished) and the most any request held.
  double gpu_sum = 0.0;
  int64_t gpu_n = 0, gpu_peak = 0;
  for (const Result& r : results) {
    if (r.code != grpc::StatusCode::OK) continue;
    gpu_sum += static_cast<double>(r.kv_gpu_bytes);
    ++gpu_n;
    gpu_peak = std::max(gpu_peak, r.kv_gpu_peak_bytes);
  }
  out["kv_gpu_bytes_last_mean"] = gpu_n > 0 ? gpu_sum / static_cast<double>(gpu_n) : 0.0;
  out["kv_gpu_bytes_peak_max"] = gpu_peak;
  std::cout << out.dump(a.Flag("json") ? -1 : 2) << std::endl;
  return OkStatus();
}

}  // namespace slim::bench
