// Token sampling on the CPU over one row of logits: penalties, greedy / top-k / top-p / min-p,
// temperature and a portable seeded draw. Does not know about stop conditions or tokenizers.
#include "engine/sampler/sampler.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <limits>

#include "engine/sampler/row_math.h"

namespace slim {
namespace {

using row_math::ExpSum;
using row_math::MaxOf;

std::string Num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%g", v);
  return buf;
}

// True when lo <= v <= hi (or lo < v when `open_lo`, v < hi when `open_hi`); false for NaN.
bool InRange(double v, double lo, double hi, bool open_lo, bool open_hi) {
  if (std::isnan(v)) return false;
  if (open_lo ? !(v > lo) : !(v >= lo)) return false;
  if (open_hi ? !(v < hi) : !(v <= hi)) return false;
  return true;
}

Status RangeError(const char* field, const char* range, double got) {
  return InvalidArgumentError(std::string(field) + " must be in " + range + ", got " + Num(got));
}

// Log-softmax of one penalized logit at 1/T (Sample and SampleFromSummary share it).
float Logprob(float logit, float max_logit, float inv_t, double log_z) {
  return static_cast<float>((logit - max_logit) * inv_t - log_z);
}

// Uniform double in [0, 1) from the top 53 bits of one 64-bit draw: the same on every platform,
// unlike std::uniform_real_distribution.
double UniformDouble(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * 0x1.0p-53;
}

constexpr size_t kLanes = 16;  // independent accumulators, so the reductions vectorize

}  // namespace

Status SamplingParams::Validate(int32_t vocab_size) const {
  if (vocab_size <= 0) {
    return InvalidArgumentError("vocab_size must be positive, got " + std::to_string(vocab_size));
  }
  if (!InRange(temperature, 0, 100, false, false)) return RangeError("temperature", "[0, 100]", temperature);
  if (top_k < 0 || top_k > vocab_size) {
    return InvalidArgumentError("top_k must be in [0, " + std::to_string(vocab_size) + "], got " +
                                std::to_string(top_k));
  }
  if (!InRange(top_p, 0, 1, true, false)) return RangeError("top_p", "(0, 1]", top_p);
  if (!InRange(min_p, 0, 1, false, true)) return RangeError("min_p", "[0, 1)", min_p);
  if (!InRange(repetition_penalty, 0, 10, true, false)) {
    return RangeError("repetition_penalty", "(0, 10]", repetition_penalty);
  }
  if (!InRange(frequency_penalty, -2, 2, false, false)) {
    return RangeError("frequency_penalty", "[-2, 2]", frequency_penalty);
  }
  if (!InRange(presence_penalty, -2, 2, false, false)) {
    return RangeError("presence_penalty", "[-2, 2]", presence_penalty);
  }
  if (penalty_last_n < -1) {
    return InvalidArgumentError("penalty_last_n must be -1 (all) or >= 0, got " +
                                std::to_string(penalty_last_n));
  }
  if (logprobs < 0 || logprobs > 20) {
    return InvalidArgumentError("logprobs must be in [0, 20], got " + std::to_string(logprobs));
  }
  return OkStatus();
}

Sampler::Sampler(const SamplingParams& params, int32_t vocab_size)
    : p_(params),
      vocab_size_(vocab_size),
      rng_(params.seed),
      work_(vocab_size),
      idx_(static_cast<size_t>(vocab_size) + 1),
      probs_(vocab_size),
      counts_(vocab_size, 0),
      scratch_(static_cast<size_t>(vocab_size) + 1) {}

void Sampler::CountPenalties(std::span<const int32_t> history, std::vector<PenaltyCount>* out) {
  out->clear();
  const bool neutral = p_.repetition_penalty == 1.0f && p_.frequency_penalty == 0.0f &&
                       p_.presence_penalty == 0.0f;
  if (neutral || p_.penalty_last_n == 0 || history.empty()) return;
  size_t n = history.size();
  if (p_.penalty_last_n > 0) n = std::min(n, static_cast<size_t>(p_.penalty_last_n));
  const std::span<const int32_t> window = history.last(n);
  for (int32_t t : window) {
    if (t >= 0 && t < vocab_size_) ++counts_[t];
  }
  // Second pass: emit each distinct token once and reset its count (counts_ is all zero again
  // afterwards, so no O(vocab) clear is needed).
  for (int32_t t : window) {
    if (t < 0 || t >= vocab_size_ || counts_[t] == 0) continue;
    out->push_back({t, counts_[t]});
    counts_[t] = 0;
  }
}

void Sampler::ApplyPenalties(std::span<const int32_t> history) {
  CountPenalties(history, &penalties_);
  for (const PenaltyCount& pc : penalties_) {
    float& l = work_[pc.id];
    l = PenalizeLogit(l, pc.count, p_.repetition_penalty, p_.frequency_penalty, p_.presence_penalty);
  }
}

void Sampler::SelectTop(size_t k) {
  row_math::SelectTopIds(work_.data(), static_cast<size_t>(vocab_size_), k, idx_.data());
}

size_t Sampler::Nucleus(float inv_t, float max_logit, double z) {
  // Bucket b < kTail holds the tokens with (max - logit) / T in [b, b + 1) / kPerNat; kTail takes
  // everything below e^-16 of the top weight. Buckets are monotone in the logit, so the buckets
  // before the one where the cumulative mass crosses top_p are kept whole and only the crossing
  // bucket is sorted. Real logits put most of the vocabulary in the tail, which is skipped by one
  // compare per token.
  constexpr int kPerNat = 64;
  constexpr int kTail = 16 * kPerNat;
  const size_t vocab = static_cast<size_t>(vocab_size_);
  const float* w = work_.data();
  const float near = max_logit - 16.0f / inv_t;  // tokens at or below are in the tail
  // Both passes must classify a token identically, so this is the only place that does it.
  auto bucket = [&](size_t i) {
    if (!(w[i] > near)) return kTail;
    const float x = std::min((max_logit - w[i]) * inv_t, 16.0f);
    return std::min(static_cast<int>(x * kPerNat), kTail);
  };
  // Two interleaved histograms shorten the add chains when neighbours share a bucket.
  std::array<std::array<double, kTail + 1>, 2> hist{};
  std::array<int32_t, kTail + 1> count{};
  for (size_t i = 0; i < vocab; ++i) {
    if (w[i] > near) {  // the common case (tail) costs one predictable compare
      const int b = bucket(i);
      hist[i & 1][b] += probs_[i];
      ++count[b];
    }
  }
  std::array<double, kTail + 1> mass;
  double near_mass = 0.0;
  size_t near_count = 0;
  for (int b = 0; b < kTail; ++b) {
    mass[b] = hist[0][b] + hist[1][b];
    near_mass += mass[b];
    near_count += static_cast<size_t>(count[b]);
  }
  mass[kTail] = std::max(0.0, z - near_mass);
  count[kTail] = static_cast<int32_t>(vocab - near_count);

  const double target = static_cast<double>(p_.top_p) * z;
  int cross = kTail;
  double before_cross = 0.0;
  size_t kept = 0;  // tokens in the buckets before `cross`
  for (int b = 0; b < kTail; ++b) {
    if (count[b] > 0 && before_cross + mass[b] >= target) {
      cross = b;
      break;
    }
    before_cross += mass[b];
    kept += static_cast<size_t>(count[b]);
  }
  // Buckets before `cross` go to idx_[0, kept), the crossing bucket to scratch_. Branch-free
  // stores: each token is written to both and only the matching cursor advances (both buffers
  // have one spare slot).
  int32_t* ids = idx_.data();
  int32_t* cross_ids = scratch_.data();
  size_t head = 0, n_cross = 0;
  const bool all = cross == kTail;
  for (size_t i = 0; i < vocab; ++i) {
    if (all || w[i] > near) {
      const int b = bucket(i);  // kTail for tokens at or below `near`
      ids[head] = static_cast<int32_t>(i);
      head += b < cross;
      cross_ids[n_cross] = static_cast<int32_t>(i);
      n_cross += b == cross;
    }
  }
  std::sort(cross_ids, cross_ids + n_cross, row_math::Before{w});
  double cum = before_cross;
  size_t n = head;
  for (size_t i = 0; i < n_cross; ++i) {
    ids[n++] = cross_ids[i];
    cum += probs_[cross_ids[i]];
    if (cum >= target) break;
  }
  return std::max<size_t>(n, 1);
}

size_t Sampler::TruncateTopK(size_t k) const {
  const int32_t* ids = idx_.data();
  size_t n = k;
  if (p_.top_p < 1.0f) {
    double z = 0.0;
    for (size_t i = 0; i < n; ++i) z += probs_[ids[i]];
    const double target = static_cast<double>(p_.top_p) * z;
    double cum = 0.0;
    for (size_t i = 0; i < n; ++i) {
      cum += probs_[ids[i]];
      if (cum >= target) {
        n = i + 1;
        break;
      }
    }
  }
  if (p_.min_p > 0.0f) {
    // The top token has weight exp(0) = 1 and is always a candidate, so the threshold relative
    // to the most likely token is min_p itself (and the top token always passes it).
    size_t keep = 1;
    while (keep < n && probs_[ids[keep]] >= p_.min_p) ++keep;
    n = keep;
  }
  return n;
}

size_t Sampler::Truncate(float inv_t, float max_logit, double z) {
  const size_t vocab = static_cast<size_t>(vocab_size_);
  int32_t* ids = idx_.data();
  if (p_.top_k > 0 && static_cast<size_t>(p_.top_k) < vocab) {
    const size_t k = static_cast<size_t>(p_.top_k);
    SelectTop(k);
    return TruncateTopK(k);
  }
  if (p_.top_p < 1.0f) {
    size_t n = Nucleus(inv_t, max_logit, z);
    if (p_.min_p > 0.0f) {
      // The top token has weight exp(0) = 1, so the threshold relative to it is min_p itself.
      size_t out = 0;
      for (size_t i = 0; i < n; ++i) {
        if (probs_[ids[i]] >= p_.min_p) ids[out++] = ids[i];
      }
      n = std::max<size_t>(out, 1);
    }
    return n;
  }
  // min-p alone: collect the tokens at or above the threshold directly.
  size_t out = 0;
  for (size_t i = 0; i < vocab; ++i) {
    ids[out] = static_cast<int32_t>(i);
    out += probs_[i] >= p_.min_p;
  }
  return std::max<size_t>(out, 1);
}

int32_t Sampler::Draw(size_t n, bool all) {
  const double u = UniformDouble(rng_);
  const float* pr = probs_.data();
  const int32_t* ids = idx_.data();
  if (!all) {
    double total = 0.0;
    for (size_t i = 0; i < n; ++i) total += pr[ids[i]];
    const double target = u * total;
    double cum = 0.0;
    int32_t last_positive = ids[0];
    for (size_t i = 0; i < n; ++i) {
      const float p = pr[ids[i]];
      if (p <= 0.0f) continue;
      last_positive = ids[i];
      cum += p;
      if (target < cum) return ids[i];
    }
    return last_positive;  // rounding at the very top of the range
  }
  // Whole vocabulary in id order: sum blocks with vector lanes, then walk only the block where
  // the cumulative mass crosses the target.
  constexpr size_t kBlock = 256;
  const size_t n_blocks = (n + kBlock - 1) / kBlock;
  std::vector<double>& sums = block_sums_;
  sums.assign(n_blocks, 0.0);
  for (size_t b = 0; b < n_blocks; ++b) {
    const size_t lo = b * kBlock, hi = std::min(n, lo + kBlock);
    std::array<float, kLanes> acc{};
    size_t i = lo;
    for (; i + kLanes <= hi; i += kLanes) {
      for (size_t j = 0; j < kLanes; ++j) acc[j] += pr[i + j];
    }
    double s = 0.0;
    for (; i < hi; ++i) s += pr[i];
    for (float a : acc) s += a;
    sums[b] = s;
  }
  double total = 0.0;
  for (double s : sums) total += s;
  const double target = u * total;
  double cum = 0.0;
  int32_t last_positive = -1;
  for (size_t b = 0; b < n_blocks; ++b) {
    if (sums[b] <= 0.0) continue;
    if (cum + sums[b] <= target && b + 1 < n_blocks) {
      cum += sums[b];
      continue;
    }
    const size_t lo = b * kBlock, hi = std::min(n, lo + kBlock);
    for (size_t i = lo; i < hi; ++i) {
      if (pr[i] <= 0.0f) continue;
      last_positive = static_cast<int32_t>(i);
      cum += pr[i];
      if (target < cum) return last_positive;
    }
    // The serial sum inside the block fell just short of the block sum: stay in this block.
    if (last_positive >= 0) return last_positive;
  }
  return last_positive >= 0 ? last_positive : 0;
}

float Sampler::InverseTemperature(bool* greedy) const {
  // A temperature so small that 1/T overflows is greedy in effect (and would produce inf * 0).
  *greedy = p_.temperature == 0.0f || !std::isfinite(1.0f / p_.temperature);
  return *greedy ? 1.0f : 1.0f / p_.temperature;
}

SampleResult Sampler::Sample(std::span<const float> logits, std::span<const int32_t> history) {
  SampleResult res;
  if (logits.size() != static_cast<size_t>(vocab_size_)) return res;
  const size_t vocab = logits.size();
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();

  for (size_t i = 0; i < vocab; ++i) work_[i] = SanitizeLogit(logits[i]);
  ApplyPenalties(history);

  float max_logit = MaxOf(work_.data(), vocab);
  if (max_logit == kNegInf) {  // everything masked: fall back to uniform
    std::fill(work_.begin(), work_.end(), 0.0f);
    max_logit = 0.0f;
  }

  bool greedy;
  const float inv_t = InverseTemperature(&greedy);
  // probs_[i] = exp((l_i - max) / T) in [0, 1]; their sum is the softmax normalizer.
  const double z = ExpSum(work_.data(), vocab, max_logit, inv_t, probs_.data());
  const double log_z = std::log(z);

  int32_t token;
  if (greedy) {
    token = static_cast<int32_t>(std::find(work_.begin(), work_.end(), max_logit) - work_.begin());
  } else {
    const bool truncates = (p_.top_k > 0 && p_.top_k < vocab_size_) || p_.top_p < 1.0f || p_.min_p > 0.0f;
    const size_t n = truncates ? Truncate(inv_t, max_logit, z) : vocab;
    token = Draw(n, !truncates);
  }
  res.token = token;
  res.logprob = Logprob(work_[token], max_logit, inv_t, log_z);

  if (p_.logprobs > 0) {
    const size_t n = std::min(static_cast<size_t>(p_.logprobs), vocab);
    SelectTop(n);
    res.top.resize(n);
    for (size_t i = 0; i < n; ++i) {
      const int32_t id = idx_[i];
      res.top[i] = {id, Logprob(work_[id], max_logit, inv_t, log_z)};
    }
  }
  return res;
}

std::optional<SummaryRequest> Sampler::SummaryRequestFor(std::span<const int32_t> history) {
  bool greedy;
  SummaryRequest req;
  req.inv_t = InverseTemperature(&greedy);
  if (greedy) {
    req.k = std::max(1, p_.logprobs);
  } else if (p_.top_k > 0 && p_.top_k < vocab_size_) {
    req.k = std::max(p_.top_k, p_.logprobs);
  } else {
    return std::nullopt;  // top-p / min-p / plain temperature over the whole vocabulary
  }
  if (req.k > kMaxSummaryK || req.k > vocab_size_) return std::nullopt;
  CountPenalties(history, &req.penalties);
  req.repetition_penalty = p_.repetition_penalty;
  req.frequency_penalty = p_.frequency_penalty;
  req.presence_penalty = p_.presence_penalty;
  return req;
}

std::optional<SampleResult> Sampler::SampleFromSummary(const LogitsSummary& s) {
  bool greedy;
  const float inv_t = InverseTemperature(&greedy);
  const size_t top_k = greedy ? 1 : static_cast<size_t>(p_.top_k);
  const size_t n_logprobs = static_cast<size_t>(std::max(p_.logprobs, 0));
  const bool decidable = greedy || (p_.top_k > 0 && p_.top_k < vocab_size_);
  // Sample treats an all-masked row as uniform and an overflowed penalty as it comes; the
  // summary does not describe either.
  if (!decidable || !std::isfinite(s.max_logit) || s.top.size() < std::max(top_k, n_logprobs) ||
      !(s.z >= 1.0)) {
    return std::nullopt;
  }
  const float max_logit = s.top[0].logit;
  const double log_z = std::log(s.z);
  SampleResult res;
  size_t pos = 0;  // of the token in s.top
  if (!greedy) {
    // The candidates as Truncate's top-k path leaves them: ids best first, probs_ by id from the
    // same ExpSum over the same logits (padded to whole vectors with zero-weight -inf).
    top_logits_.assign((top_k + 7) / 8 * 8, -std::numeric_limits<float>::infinity());
    for (size_t i = 0; i < top_k; ++i) top_logits_[i] = s.top[i].logit;
    top_weights_.resize(top_logits_.size());
    ExpSum(top_logits_.data(), top_logits_.size(), max_logit, inv_t, top_weights_.data());
    for (size_t i = 0; i < top_k; ++i) {
      idx_[i] = s.top[i].id;
      probs_[s.top[i].id] = top_weights_[i];
    }
    const int32_t token = Draw(TruncateTopK(top_k), false);
    while (s.top[pos].id != token) ++pos;
  }
  res.token = s.top[pos].id;
  res.logprob = Logprob(s.top[pos].logit, max_logit, inv_t, log_z);
  res.top.resize(n_logprobs);
  for (size_t i = 0; i < n_logprobs; ++i) {
    res.top[i] = {s.top[i].id, Logprob(s.top[i].logit, max_logit, inv_t, log_z)};
  }
  return res;
}

}  // namespace slim
