// spdlog setup (text or JSON lines) and the per-request log line.
#include "server/logging.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <ctime>
#include <nlohmann/json.hpp>

namespace slim::server {
namespace {

using json = nlohmann::json;

// One JSON object per line: {"ts", "level", "msg"}; a payload that is itself a JSON object
// (LogRequest's) is merged in instead of quoted.
class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const auto t = std::chrono::system_clock::to_time_t(msg.time);
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(msg.time.time_since_epoch()).count() % 1000;
    std::tm tm{};
    gmtime_r(&t, &tm);
    char ts[64];
    std::snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
    const std::string_view payload(msg.payload.data(), msg.payload.size());
    json head = {{"ts", ts}, {"level", std::string(spdlog::level::to_string_view(msg.level).data(),
                                                   spdlog::level::to_string_view(msg.level).size())}};
    std::string line;
    if (payload.size() >= 2 && payload.front() == '{' && payload.back() == '}') {
      line = head.dump();
      line.pop_back();
      line += ",";
      line.append(payload.substr(1));
    } else {
      head["msg"] = std::string(payload);
      line = head.dump(-1, ' ', false, json::error_handler_t::replace);
    }
    line += "\n";
    dest.append(line.data(), line.data() + line.size());
  }
  std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<JsonFormatter>(); }
};

LogFormat g_format = LogFormat::kText;

}  // namespace

Status InitLogging(LogFormat format, const std::string& level) {
  const spdlog::level::level_enum lv = spdlog::level::from_str(level);
  if (lv == spdlog::level::off && level != "off") {
    return InvalidArgumentError("--log-level must be trace, debug, info, warn, error or off, got '" + level + "'");
  }
  auto logger = std::make_shared<spdlog::logger>("sliminfer", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  if (format == LogFormat::kJson) {
    logger->set_formatter(std::make_unique<JsonFormatter>());
  } else {
    logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
  }
  logger->set_level(lv);
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
  g_format = format;
  return OkStatus();
}

void LogRequest(const RequestLogLine& l) {
  const bool ok = l.status == "OK";
  if (g_format == LogFormat::kJson) {
    json j = {{"msg", "request"},         {"request_id", l.request_id},   {"peer", l.peer},
              {"status", l.status},       {"prompt_tokens", l.prompt_tokens},
              {"completion_tokens", l.completion_tokens}, {"queue_ms", l.queue_ms},
              {"prefill_ms", l.prefill_ms}, {"prefill_chunks", l.prefill_chunks}, {"preemptions", l.preemptions}, {"e2e_ms", l.e2e_ms}, {"decode_ms_per_token", l.decode_ms_per_token},
              {"pruning", l.pruning}};
    if (l.ttft_ms >= 0) j["ttft_ms"] = l.ttft_ms;
    if (ok) j["finish_reason"] = l.finish_reason;
    else j["error"] = l.message;
    spdlog::info("{}", j.dump(-1, ' ', false, json::error_handler_t::replace));
    return;
  }
  std::string ttft = l.ttft_ms >= 0 ? fmt::format("{:.1f}", l.ttft_ms) : "-";
  std::string tail = ok ? "finish=" + l.finish_reason : "error=\"" + l.message + "\"";
  spdlog::info("request id={} peer={} status={} prompt_tokens={} completion_tokens={} queue_ms={:.1f} "
               "prefill_ms={:.1f} prefill_chunks={} preemptions={} ttft_ms={} e2e_ms={:.1f} decode_ms_per_token={:.2f} "
               "pruning={} {}",
               l.request_id, l.peer, l.status, l.prompt_tokens, l.completion_tokens, l.queue_ms, l.prefill_ms,
               l.prefill_chunks, l.preemptions, ttft,
               l.e2e_ms, l.decode_ms_per_token, l.pruning.empty() ? "-" : l.pruning, tail);
}

}  // namespace slim::server
