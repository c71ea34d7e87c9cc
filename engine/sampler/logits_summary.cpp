// The host reference of the logits summary (CPU backend, default Backend implementation, tests).
#include "engine/sampler/logits_summary.h"

#include <algorithm>
#include <limits>
#include <string>

#include "engine/sampler/row_math.h"

namespace slim {

Status ValidateSummaryRequest(const SummaryRequest& req, int64_t vocab) {
  if (req.k < 0 || req.k > kMaxSummaryK || req.k > vocab) {
    return InvalidArgumentError("logits summary: k must be in [0, " + std::to_string(std::min<int64_t>(kMaxSummaryK, vocab)) +
                                "], got " + std::to_string(req.k));
  }
  std::vector<int32_t> ids;
  ids.reserve(req.penalties.size());
  for (const PenaltyCount& p : req.penalties) {
    if (p.id < 0 || p.id >= vocab) {
      return InvalidArgumentError("logits summary: penalty id " + std::to_string(p.id) + " outside the vocabulary");
    }
    ids.push_back(p.id);
  }
  std::sort(ids.begin(), ids.end());
  if (std::adjacent_find(ids.begin(), ids.end()) != ids.end()) {
    return InvalidArgumentError("logits summary: penalty ids must be distinct");
  }
  return OkStatus();
}

void SummarizeLogits(std::span<const float> logits, const SummaryRequest& req, SummaryScratch* scratch,
                     LogitsSummary* out) {
  *out = LogitsSummary{};
  if (req.k <= 0) return;
  const size_t vocab = logits.size();
  std::vector<float>& w = scratch->work;
  w.resize(vocab);
  for (size_t i = 0; i < vocab; ++i) w[i] = SanitizeLogit(logits[i]);
  for (const PenaltyCount& p : req.penalties) {
    float& l = w[static_cast<size_t>(p.id)];
    l = PenalizeLogit(l, p.count, req.repetition_penalty, req.frequency_penalty, req.presence_penalty);
  }
  out->max_logit = row_math::MaxOf(w.data(), vocab);
  scratch->weights.resize(vocab);
  out->z = row_math::ExpSum(w.data(), vocab, out->max_logit, req.inv_t, scratch->weights.data());
  const size_t k = std::min(static_cast<size_t>(req.k), vocab);
  scratch->ids.resize(vocab + 1);
  row_math::SelectTopIds(w.data(), vocab, k, scratch->ids.data());
  out->top.resize(k);
  for (size_t i = 0; i < k; ++i) {
    const int32_t id = scratch->ids[i];
    out->top[i] = {id, w[static_cast<size_t>(id)]};
  }
}

Status SummarizeRows(const float* rows, int64_t n, int64_t vocab, int64_t stride,
                     std::span<const SummaryRequest> requests, SummaryScratch* scratch,
                     std::vector<LogitsSummary>* out) {
  if (static_cast<int64_t>(requests.size()) != n) {
    return InvalidArgumentError("logits summary: " + std::to_string(requests.size()) + " requests for " +
                                std::to_string(n) + " rows");
  }
  for (const SummaryRequest& r : requests) SLIM_RETURN_IF_ERROR(ValidateSummaryRequest(r, vocab));
  out->resize(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    const std::span<const float> row(rows + static_cast<int64_t>(i) * stride, static_cast<size_t>(vocab));
    SummarizeLogits(row, requests[i], scratch, &(*out)[i]);
  }
  return OkStatus();
}

}  // namespace slim
