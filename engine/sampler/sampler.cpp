// Token sampling on the CPU over one row of logits: penalties, greedy / top-k / top-p / min-p,
// temperature and a portable seeded draw. Does not know about stop conditions or tokenizers.
#include "engine/sampler/sampler.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <numeric>

namespace slim {
namespace {

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

// Uniform double in [0, 1) from the top 53 bits of one 64-bit draw: the same on every platform,
// unlike std::uniform_real_distribution.
double UniformDouble(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * 0x1.0p-53;
}

constexpr size_t kLanes = 16;  // independent accumulators, so the reductions vectorize

// Eight floats in a vector register (GCC/Clang vector extensions): the hot reductions over the
// vocabulary are written with them because the auto-vectorizer gives up on the exp below.
typedef float V8 __attribute__((vector_size(32)));
typedef int32_t V8i __attribute__((vector_size(32)));

inline V8 Load8(const float* p) {
  V8 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline void Store8(float* p, V8 v) { std::memcpy(p, &v, sizeof(v)); }
inline V8 Splat8(float x) { return V8{} + x; }

// exp(x) for x <= 0 (the scaled logits minus their max), eight at a time: Cephes' polynomial
// after x = n ln2 + r, relative error about 2e-7; 0 below -87 (and for -inf).
inline V8 ExpNonPositive8(V8 x) {
  const V8i underflow = x < Splat8(-87.0f);
  x = underflow ? Splat8(-87.0f) : x;
  // round(x / ln2) by the 1.5 * 2^23 trick (|x / ln2| < 2^22 here).
  const V8 n = (x * 1.44269504f + 12582912.0f) - 12582912.0f;
  const V8 r = (x - n * 0.693359375f) - n * -2.12194440e-4f;  // |r| <= ln2 / 2
  V8 q = Splat8(1.9875691500e-4f);
  q = q * r + 1.3981999507e-3f;
  q = q * r + 8.3334519073e-3f;
  q = q * r + 4.1665795894e-2f;
  q = q * r + 1.6666665459e-1f;
  q = q * r + 5.0000001201e-1f;
  q = q * r * r + r + 1.0f;
  const V8i bits = (__builtin_convertvector(n, V8i) + 127) << 23;
  const V8 scale = std::bit_cast<V8>(bits);
  const V8 e = q * scale;
  const V8i masked = std::bit_cast<V8i>(e) & ~underflow;
  return std::bit_cast<V8>(masked);
}

// Max of x[0, n) (no NaNs).
float MaxOf(const float* x, size_t n) {
  V8 m0 = Splat8(-std::numeric_limits<float>::infinity()), m1 = m0;
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const V8 a = Load8(x + i), b = Load8(x + i + 8);
    m0 = a > m0 ? a : m0;
    m1 = b > m1 ? b : m1;
  }
  float m = -std::numeric_limits<float>::infinity();
  for (int j = 0; j < 8; ++j) m = std::max({m, m0[j], m1[j]});
  for (; i < n; ++i) m = std::max(m, x[i]);
  return m;
}

// out[i] = exp((w[i] - max) * inv_t) for i in [0, n); returns their sum.
double ExpSum(const float* w, size_t n, float max, float inv_t, float* out) {
  const V8 vmax = Splat8(max), vt = Splat8(inv_t);
  double total = 0.0;
  size_t i = 0;
  // Float lane sums are folded into the double every 4096 elements to stay accurate.
  while (i + 8 <= n) {
    const size_t end = i + std::min<size_t>((n - i) / 8 * 8, 4096);
    V8 acc = V8{};
    for (; i < end; i += 8) {
      const V8 e = ExpNonPositive8((Load8(w + i) - vmax) * vt);
      Store8(out + i, e);
      acc += e;
    }
    for (int j = 0; j < 8; ++j) total += acc[j];
  }
  if (i < n) {  // tail, padded with -inf (weight 0)
    float tmp[8];
    std::fill(tmp, tmp + 8, -std::numeric_limits<float>::infinity());
    std::copy(w + i, w + n, tmp);
    const V8 e = ExpNonPositive8((Load8(tmp) - vmax) * vt);
    for (size_t j = 0; i + j < n; ++j) {
      out[i + j] = e[j];
      total += e[j];
    }
  }
  return total;
}

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

void Sampler::ApplyPenalties(std::span<const int32_t> history) {
  const bool neutral = p_.repetition_penalty == 1.0f && p_.frequency_penalty == 0.0f &&
                       p_.presence_penalty == 0.0f;
  if (neutral || p_.penalty_last_n == 0 || history.empty()) return;
  size_t n = history.size();
  if (p_.penalty_last_n > 0) n = std::min(n, static_cast<size_t>(p_.penalty_last_n));
  const std::span<const int32_t> window = history.last(n);
  for (int32_t t : window) {
    if (t >= 0 && t < vocab_size_) ++counts_[t];
  }
  // Second pass: penalize each distinct token once and reset its count (counts_ is all zero again
  // afterwards, so no O(vocab) clear is needed).
  for (int32_t t : window) {
    if (t < 0 || t >= vocab_size_ || counts_[t] == 0) continue;
    const int32_t c = counts_[t];
    counts_[t] = 0;
    float& l = work_[t];
    if (l <= 0.0f) {
      l *= p_.repetition_penalty;
    } else {
      l /= p_.repetition_penalty;
    }
    l -= static_cast<float>(c) * p_.frequency_penalty + p_.presence_penalty;
  }
}

void Sampler::SelectTop(size_t k) {
  const size_t vocab = static_cast<size_t>(vocab_size_);
  const float* w = work_.data();
  // "a before b": higher logit, ties to the lower id.
  auto before = [w](int32_t a, int32_t b) { return w[a] > w[b] || (w[a] == w[b] && a < b); };
  int32_t* ids = idx_.data();
  if (k * 16 > vocab) {
    std::iota(ids, ids + vocab, 0);
    std::nth_element(ids, ids + k, ids + vocab, before);
    return;
  }
  // Heap of the k best so far with the worst on top; a later id only enters by a strictly
  // higher logit, which keeps ties on the lowest ids.
  std::iota(ids, ids + k, 0);
  std::make_heap(ids, ids + k, before);
  for (size_t i = k; i < vocab; ++i) {
    if (w[i] > w[ids[0]]) {
      std::pop_heap(ids, ids + k, before);
      ids[k - 1] = static_cast<int32_t>(i);
      std::push_heap(ids, ids + k, before);
    }
  }
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
  auto before = [w](int32_t a, int32_t b) { return w[a] > w[b] || (w[a] == w[b] && a < b); };
  std::sort(cross_ids, cross_ids + n_cross, before);
  double cum = before_cross;
  size_t n = head;
  for (size_t i = 0; i < n_cross; ++i) {
    ids[n++] = cross_ids[i];
    cum += probs_[cross_ids[i]];
    if (cum >= target) break;
  }
  return std::max<size_t>(n, 1);
}

size_t Sampler::Truncate(float inv_t, float max_logit, double z) {
  const size_t vocab = static_cast<size_t>(vocab_size_);
  const float* w = work_.data();
  auto before = [w](int32_t a, int32_t b) { return w[a] > w[b] || (w[a] == w[b] && a < b); };
  int32_t* ids = idx_.data();
  size_t n = vocab;
  bool sorted = false;
  if (p_.top_k > 0 && static_cast<size_t>(p_.top_k) < vocab) {
    n = static_cast<size_t>(p_.top_k);
    SelectTop(n);
    if (p_.top_p < 1.0f || p_.min_p > 0.0f) {
      std::sort(ids, ids + n, before);
      sorted = true;
    }
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
  } else if (p_.top_p < 1.0f) {
    n = Nucleus(inv_t, max_logit, z);
  } else {
    // min-p alone: collect the tokens at or above the threshold directly.
    size_t out = 0;
    for (size_t i = 0; i < vocab; ++i) {
      ids[out] = static_cast<int32_t>(i);
      out += probs_[i] >= p_.min_p;
    }
    return std::max<size_t>(out, 1);
  }

  if (p_.min_p > 0.0f) {
    // The top token has weight exp(0) = 1 and is always a candidate, so the threshold relative
    // to the most likely token is min_p itself (and the top token always passes it).
    const float thr = p_.min_p;
    if (sorted) {
      size_t keep = 1;
      while (keep < n && probs_[ids[keep]] >= thr) ++keep;
      n = keep;
    } else {
      size_t out = 0;
      for (size_t i = 0; i < n; ++i) {
        if (probs_[ids[i]] >= thr) ids[out++] = ids[i];
      }
      n = std::max<size_t>(out, 1);
    }
  }
  return n;
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

SampleResult Sampler::Sample(std::span<const float> logits, std::span<const int32_t> history) {
  SampleResult res;
  if (logits.size() != static_cast<size_t>(vocab_size_)) return res;
  const size_t vocab = logits.size();
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  constexpr float kMax = std::numeric_limits<float>::max();

  // Sanitize: NaN -> -inf, +inf -> largest finite (so x - max stays defined).
  for (size_t i = 0; i < vocab; ++i) {
    const float v = logits[i];
    work_[i] = std::isnan(v) ? kNegInf : std::min(v, kMax);
  }
  ApplyPenalties(history);

  float max_logit = MaxOf(work_.data(), vocab);
  if (max_logit == kNegInf) {  // everything masked: fall back to uniform
    std::fill(work_.begin(), work_.end(), 0.0f);
    max_logit = 0.0f;
  }

  // A temperature so small that 1/T overflows is greedy in effect (and would produce inf * 0).
  const bool greedy = p_.temperature == 0.0f || !std::isfinite(1.0f / p_.temperature);
  const float inv_t = greedy ? 1.0f : 1.0f / p_.temperature;
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
  res.logprob = static_cast<float>((work_[token] - max_logit) * inv_t - log_z);

  if (p_.logprobs > 0) {
    const size_t n = std::min(static_cast<size_t>(p_.logprobs), vocab);
    const float* w = work_.data();
    auto before = [w](int32_t a, int32_t b) { return w[a] > w[b] || (w[a] == w[b] && a < b); };
    SelectTop(n);
    std::sort(idx_.begin(), idx_.begin() + static_cast<std::ptrdiff_t>(n), before);
    res.top.resize(n);
    for (size_t i = 0; i < n; ++i) {
      const int32_t id = idx_[i];
      res.top[i] = {id, static_cast<float>((w[id] - max_logit) * inv_t - log_z)};
    }
  }
  return res;
}

}  // namespace slim
