// Stop conditions over one generated stream: decides what text is safe to emit and when the
// sequence finishes. Knows nothing of tokenizers beyond the text deltas it is handed.
#include "engine/sampler/stop_checker.h"

#include <algorithm>
#include <string_view>
#include <utility>

namespace slim {
namespace {

constexpr size_t kMaxStopStrings = 16;
constexpr size_t kMaxStopStringBytes = 256;

// Length of the longest suffix of `text` that is a proper prefix of `stop`.
size_t PartialMatch(std::string_view text, std::string_view stop) {
  const size_t max_len = std::min(text.size(), stop.size() - 1);
  for (size_t len = max_len; len > 0; --len) {
    if (text.substr(text.size() - len) == stop.substr(0, len)) return len;
  }
  return 0;
}

}  // namespace

const char* FinishReasonName(FinishReason r) {
  switch (r) {
    case FinishReason::kNone: return "none";
    case FinishReason::kLength: return "length";
    case FinishReason::kStopToken: return "stop_token";
    case FinishReason::kStopString: return "stop";
    case FinishReason::kEndOfGeneration: return "eos";
  }
  return "none";
}

Status StopParams::Validate(int32_t vocab_size, int32_t max_context) const {
  if (max_tokens < 1 || max_tokens > max_context) {
    return InvalidArgumentError("max_tokens must be in [1, " + std::to_string(max_context) +
                                "], got " + std::to_string(max_tokens));
  }
  for (size_t i = 0; i < stop_token_ids.size(); ++i) {
    const int32_t id = stop_token_ids[i];
    if (id < 0 || id >= vocab_size) {
      return InvalidArgumentError("stop_token_ids[" + std::to_string(i) + "] must be in [0, " +
                                  std::to_string(vocab_size) + "), got " + std::to_string(id));
    }
  }
  if (stop_strings.size() > kMaxStopStrings) {
    return InvalidArgumentError("stop_strings may hold at most " + std::to_string(kMaxStopStrings) +
                                " strings, got " + std::to_string(stop_strings.size()));
  }
  for (size_t i = 0; i < stop_strings.size(); ++i) {
    const size_t len = stop_strings[i].size();
    if (len == 0 || len > kMaxStopStringBytes) {
      return InvalidArgumentError("stop_strings[" + std::to_string(i) + "] must be 1 to " +
                                  std::to_string(kMaxStopStringBytes) + " bytes long, got " +
                                  std::to_string(len));
    }
  }
  return OkStatus();
}

StopChecker::StopChecker(StopParams params) : p_(std::move(params)) {}

StopChecker::Step StopChecker::Push(int32_t token, const std::string& text_delta, bool is_eog) {
  Step step;
  if (done_) return step;
  ++generated_;

  // Token-level stops: the token's own text is not emitted; anything held back can no longer
  // grow into a stop string, so it is released now.
  const bool stop_id = std::find(p_.stop_token_ids.begin(), p_.stop_token_ids.end(), token) !=
                       p_.stop_token_ids.end();
  if (stop_id || (is_eog && !p_.ignore_eos)) {
    done_ = true;
    step.finish = stop_id ? FinishReason::kStopToken : FinishReason::kEndOfGeneration;
    step.text = std::move(held_);
    held_.clear();
    return step;
  }

  held_ += text_delta;
  // held_ never contains a complete stop string before this token, so the earliest match now
  // is the first one in the stream.
  size_t stop_at = std::string::npos;
  for (const std::string& s : p_.stop_strings) stop_at = std::min(stop_at, held_.find(s));
  if (stop_at != std::string::npos) {
    done_ = true;
    step.finish = FinishReason::kStopString;
    step.text = held_.substr(0, stop_at);
    held_.clear();  // the stop string and anything after it are dropped
    return step;
  }

  if (generated_ >= p_.max_tokens) {
    done_ = true;
    step.finish = FinishReason::kLength;
    step.text = std::move(held_);
    held_.clear();
    return step;
  }

  size_t hold = 0;
  for (const std::string& s : p_.stop_strings) hold = std::max(hold, PartialMatch(held_, s));
  step.text = held_.substr(0, held_.size() - hold);
  held_.erase(0, held_.size() - hold);
  return step;
}

std::string StopChecker::Flush() {
  std::string out = std::move(held_);
  held_.clear();
  return out;
}

}  // namespace slim
