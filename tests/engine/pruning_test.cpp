// SlimInfer pruning: schedules, block scoring and selection on constructed inputs, and the
// pruned forward pass (prefill and the decode steps after it) against a slow masked reference
// written plainly here, on synthetic weights.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <cstring>
#include <set>

#include "engine/engine.h"
#include "tests/engine/engine_test_util.h"
#include "engine/model/weight_source.h"
#include "engine/pruning/block_scorer.h"
#include "engine/pruning/decode_selection.h"
#include "engine/pruning/schedule.h"

namespace slim {
namespace {

// ---------------------------------------------------------------------------------------------
// Schedules

TEST(PruningSchedule, ValidateNamesTheProblem) {
  PruningConfig c;
  EXPECT_FALSE(c.Validate(30).ok());  // no stages
  c.stages = {{10, 0.25, true}, {20, 0.125, true}, {28, 0.0625, true}};
  EXPECT_TRUE(c.Validate(30).ok());
  c.stages = {{20, 0.25, true}, {10, 0.125, true}};
  EXPECT_NE(c.Validate(30).message().find("layers must increase"), std::string::npos);
  c.stages = {{10, 0.25, true}, {20, 0.5, true}};
  EXPECT_NE(c.Validate(30).message().find("keeps must decrease"), std::string::npos);
  c.stages = {{10, 100, false}};
  EXPECT_NE(c.Validate(30).message().find("two blocks"), std::string::npos);
  c.stages = {{30, 0.5, true}};
  EXPECT_NE(c.Validate(30).message().find("layer must be in"), std::string::npos);
  c.stages = {{0, 0.5, true}};
  EXPECT_FALSE(c.Validate(30).ok());
  c.stages = {{5, 1.5, true}};
  EXPECT_FALSE(c.Validate(30).ok());
  c.stages = {{5, 0.5, true}};
  c.unit_tokens = 7;
  EXPECT_FALSE(c.Validate(30).ok());
}

TEST(PruningSchedule, ParseAndPrint) {
  auto c = PruningConfig::Parse("10:0.25,20:1024,28:0.0625");
  ASSERT_TRUE(c.ok());
  ASSERT_EQ(c->stages.size(), 3u);
  EXPECT_TRUE(c->stages[0].fraction);
  EXPECT_FALSE(c->stages[1].fraction);
  EXPECT_EQ(c->stages[1].keep, 1024);
  EXPECT_EQ(c->ToString(), "10:0.25,20:1024,28:0.0625");
  auto w = PruningConfig::Parse("10:0.25,20:0.125,window=32,unit=4,after");
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->query_window, 32);
  EXPECT_EQ(w->unit_tokens, 4);
  EXPECT_TRUE(w->after_attention);
  EXPECT_EQ(w->ToString(), "10:0.25,20:0.125,window=32,unit=4,after");
  EXPECT_FALSE(w->attention_scores);
  auto a = PruningConfig::Parse("9:0.375,score=attn");
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE(a->attention_scores);
  EXPECT_EQ(a->ToString(), "9:0.375,score=attn");
  EXPECT_TRUE(ResolveSchedule(*a, 4096).attention_scores);
  EXPECT_FALSE(PruningConfig::Parse("9:0.375,score=max").ok());
  EXPECT_FALSE(PruningConfig::Parse("10:0.25,window=0").ok());
  EXPECT_FALSE(PruningConfig::Parse("window=8").ok());
  EXPECT_FALSE(PruningConfig::Parse("10-0.25").ok());
  EXPECT_FALSE(PruningConfig::Parse("x:1").ok());
  EXPECT_FALSE(PruningConfig::Parse("").ok());
}

TEST(PruningSchedule, ResolveAndTokensPerLayer) {
  PruningConfig c;
  c.stages = {{10, 0.25, true}, {20, 0.125, true}, {28, 0.0625, true}};
  // 8000 tokens = 125 blocks (ragged tail of 0): keep 31, 16, 8 blocks.
  ResolvedSchedule r = ResolveSchedule(c, 8000);
  ASSERT_EQ(r.stages.size(), 3u);
  EXPECT_EQ(r.stages[0].keep_blocks, 31);
  EXPECT_EQ(r.stages[1].keep_blocks, 16);
  EXPECT_EQ(r.stages[2].keep_blocks, 8);
  auto t = TokensPerLayer(r, 8000, 30);
  EXPECT_EQ(t[9], 8000);
  EXPECT_EQ(t[10], 31 * 64);
  EXPECT_EQ(t[27], 16 * 64);
  EXPECT_EQ(t[29], 8 * 64);
  // Ragged: 8010 tokens = 125 full blocks + 10; the kept last block holds 10 tokens.
  auto t2 = TokensPerLayer(ResolveSchedule(c, 8010), 8010, 30);
  EXPECT_EQ(t2[10], 30 * 64 + 10);
  // A prompt shorter than the first keep (in tokens) runs dense.
  PruningConfig tok;
  tok.stages = {{10, 2048, false}, {20, 1024, false}};
  EXPECT_TRUE(ResolveSchedule(tok, 2000).empty());
  EXPECT_EQ(ResolveSchedule(tok, 3000).stages.size(), 2u);
  // After-attention variant: the pruning layer itself keeps its full KV.
  c.after_attention = true;
  auto t3 = TokensPerLayer(ResolveSchedule(c, 8000), 8000, 30);
  EXPECT_EQ(t3[10], 8000);
  EXPECT_EQ(t3[11], 31 * 64);
}

TEST(PruningSchedule, PaperProportions) {
  PruningConfig p = PaperSchedule(32);
  ASSERT_EQ(p.stages.size(), 3u);
  EXPECT_EQ(p.stages[0].layer, 10);  // the paper's LLaMA-3.1 layers
  EXPECT_EQ(p.stages[1].layer, 20);
  EXPECT_EQ(p.stages[2].layer, 30);
  const PruningConfig qwen = PaperSchedule(28);  // and its Qwen2.5 layers
  ASSERT_EQ(qwen.stages.size(), 3u);
  EXPECT_EQ(qwen.stages[0].layer, 9);
  EXPECT_EQ(qwen.stages[1].layer, 18);
  EXPECT_EQ(qwen.stages[2].layer, 26);
  EXPECT_EQ(PaperSchedule(30).ToString(), "10:0.25,20:0.125,28:0.0625");
  // SmolLM2's measured default; any other model gets the paper's proportions.
  EXPECT_EQ(DefaultScheduleFor("Smollm2 135M 8k Lc100K Mix1 Ep2", 30).ToString(), "28:0.125");
  EXPECT_EQ(DefaultScheduleFor("Meta Llama 3.1 8B Instruct", 32).ToString(), PaperSchedule(32).ToString());
  EXPECT_EQ(DefaultScheduleFor("Qwen2.5 Coder 1.5B Instruct GGUF", 28).ToString(),
            "14:6144,21:3072,26:2048,score=attn");
  EXPECT_EQ(DefaultScheduleFor("Qwen2.5 Coder 0.5B Instruct AWQ", 24).ToString(),
            "12:0.375,18:0.1875,22:0.125,score=attn");
  EXPECT_EQ(DefaultScheduleFor("Qwen2.5 7B Instruct", 28).ToString(), PaperSchedule(28).ToString());
}

// ---------------------------------------------------------------------------------------------
// Scoring and selection on constructed keys and queries

TEST(BlockScorer, PicksTheBlocksThatMatchTheQuery) {
  BlockScoreParams p;
  p.n_heads = 4;
  p.n_kv_heads = 2;
  p.head_dim = 8;
  p.block_tokens = 16;
  p.unit_tokens = 4;
  p.query_window = 2;
  const int n = 16 * 6 + 5;  // 6 full blocks + a ragged tail of 5
  const int qd = p.n_heads * p.head_dim, kd = p.n_kv_heads * p.head_dim;
  std::mt19937 rng(5);
  std::normal_distribution<float> noise(0.0f, 0.01f);
  std::vector<float> q(static_cast<size_t>(n * qd)), k(static_cast<size_t>(n * kd));
  for (auto& v : q) v = noise(rng);
  for (auto& v : k) v = noise(rng);
  // The last two queries point along dimension 3 in every head.
  for (int r = n - 2; r < n; ++r)
    for (int h = 0; h < p.n_heads; ++h) q[static_cast<size_t>(r * qd + h * p.head_dim + 3)] = 1.0f;
  // One unit of block 4 and one of block 2 carry keys along dimension 3 (block 4's stronger);
  // block 2's signal is in a single unit, so max-over-units must find it.
  for (int r = 4 * 16 + 8; r < 4 * 16 + 12; ++r)
    for (int g = 0; g < p.n_kv_heads; ++g) k[static_cast<size_t>(r * kd + g * p.head_dim + 3)] = 2.0f;
  for (int r = 2 * 16; r < 2 * 16 + 4; ++r)
    for (int g = 0; g < p.n_kv_heads; ++g) k[static_cast<size_t>(r * kd + g * p.head_dim + 3)] = 1.0f;
  // Negative alignment counts too (|q . k|).
  for (int r = 5 * 16; r < 5 * 16 + 4; ++r) k[static_cast<size_t>(r * kd + 0 * p.head_dim + 3)] = -0.5f;
  std::vector<float> s = ScoreBlocksRef(q.data(), qd, k.data(), kd, n, p);
  ASSERT_EQ(s.size(), 7u);
  EXPECT_NEAR(s[4], 2.0f, 0.05f);
  EXPECT_NEAR(s[2], 1.0f, 0.05f);
  EXPECT_NEAR(s[5], 0.25f, 0.05f);  // only KV head 0 (query heads 0, 1) sees it: 2 * 0.5 / 4
  EXPECT_LT(s[1], 0.05f);
  // keep 4: sink (0), last (6), then 4 and 2.
  EXPECT_EQ(SelectBlocks(s, 4), (std::vector<int32_t>{0, 2, 4, 6}));
  EXPECT_EQ(SelectBlocks(s, 3), (std::vector<int32_t>{0, 4, 6}));
  // Sink and last block are kept even with the lowest scores.
  std::vector<float> low = {0.0f, 5.0f, 4.0f, 3.0f, 0.0f};
  EXPECT_EQ(SelectBlocks(low, 2), (std::vector<int32_t>{0, 4}));
  EXPECT_EQ(SelectBlocks(low, 3), (std::vector<int32_t>{0, 1, 4}));
  EXPECT_EQ(SelectBlocks(low, 10).size(), 5u);
  // Kept rows: whole blocks in order, the ragged tail included.
  auto rows = KeptRows({0, 2, 6}, n, 16);
  ASSERT_EQ(rows.size(), 16u + 16u + 5u);
  EXPECT_EQ(rows[16], 32);
  EXPECT_EQ(rows.back(), n - 1);
  EXPECT_TRUE(std::is_sorted(rows.begin(), rows.end()));
}

// The attention-mass variant is the softmax of the window's queries: with one unit per block the
// block scores sum to 1; the block whose key the queries point at gets nearly all of it, and a
// key pointing away gets less than an unrelated one (no |.|, unlike the paper's score).
TEST(BlockScorer, AttentionMassFollowsTheSoftmax) {
  BlockScoreParams p;
  p.n_heads = 4;
  p.n_kv_heads = 2;
  p.head_dim = 8;
  p.block_tokens = 4;
  p.unit_tokens = 4;
  p.query_window = 2;
  p.attention = true;
  const int n = 4 * 8;
  const int qd = p.n_heads * p.head_dim, kd = p.n_kv_heads * p.head_dim;
  std::mt19937 rng(9);
  std::normal_distribution<float> noise(0.0f, 0.01f);
  std::vector<float> q(static_cast<size_t>(n * qd)), k(static_cast<size_t>(n * kd));
  for (auto& v : q) v = noise(rng);
  for (auto& v : k) v = noise(rng);
  for (int r = n - 2; r < n; ++r)
    for (int h = 0; h < p.n_heads; ++h) q[static_cast<size_t>(r * qd + h * p.head_dim + 3)] = 4.0f;
  for (int g = 0; g < p.n_kv_heads; ++g) {
    k[static_cast<size_t>(13 * kd + g * p.head_dim + 3)] = 4.0f;   // block 3: logit 16 / sqrt(8)
    k[static_cast<size_t>(22 * kd + g * p.head_dim + 3)] = -4.0f;  // block 5: pointing away
  }
  const std::vector<float> s = ScoreBlocksRef(q.data(), qd, k.data(), kd, n, p);
  ASSERT_EQ(s.size(), 8u);
  double total = 0.0;
  for (float v : s) total += v;
  EXPECT_NEAR(total, 1.0, 1e-5);
  // One key at logit 16/sqrt(8) = 5.66 against ~30 at ~0: e^5.66 / (e^5.66 + 30) = 0.906, plus
  // the block's three other tokens at ~1/316 each.
  EXPECT_NEAR(s[3], 0.915, 0.01);
  EXPECT_LT(s[5], s[1]);
  EXPECT_EQ(SelectBlocks(s, 3), (std::vector<int32_t>{0, 3, 7}));
}

// ---------------------------------------------------------------------------------------------
// The slow masked reference: a plain LLaMA forward over the whole prompt where each layer
// attends only over the tokens alive at that layer, with pruning decided by a plain
// re-implementation of the scoring rule.

struct RefModel {
  ModelConfig c;
  std::vector<float> embd, out_norm, lm_head;
  struct Layer {
    std::vector<float> attn_norm, wq, wk, wv, wo, ffn_norm, wg, wu, wd;
  };
  std::vector<Layer> layers;
};

RefModel LoadRef(const WeightSource& src) {
  RefModel m;
  m.c = src.config();
  const ModelConfig& c = m.c;
  auto read = [&](const std::string& name, int64_t rows, int64_t cols) {
    std::vector<float> v(static_cast<size_t>(rows * cols));
    EXPECT_TRUE(src.ReadF32(name, rows, cols, v.data()).ok()) << name;
    return v;
  };
  const int64_t d = c.d_model, qd = int64_t{c.n_heads} * c.head_dim, kd = int64_t{c.n_kv_heads} * c.head_dim;
  m.embd = read("token_embd.weight", c.vocab_size, d);
  m.out_norm = read("output_norm.weight", 1, d);
  m.lm_head = c.tied_embeddings ? m.embd : read("output.weight", c.vocab_size, d);
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    RefModel::Layer L;
    L.attn_norm = read(p + "attn_norm.weight", 1, d);
    L.wq = read(p + "attn_q.weight", qd, d);
    L.wk = read(p + "attn_k.weight", kd, d);
    L.wv = read(p + "attn_v.weight", kd, d);
    L.wo = read(p + "attn_output.weight", d, qd);
    L.ffn_norm = read(p + "ffn_norm.weight", 1, d);
    L.wg = read(p + "ffn_gate.weight", c.d_ff, d);
    L.wu = read(p + "ffn_up.weight", c.d_ff, d);
    L.wd = read(p + "ffn_down.weight", d, c.d_ff);
    m.layers.push_back(std::move(L));
  }
  return m;
}

std::vector<double> Norm(const std::vector<double>& x, const std::vector<float>& w, double eps) {
  double ss = 0;
  for (double v : x) ss += v * v;
  const double s = 1.0 / std::sqrt(ss / static_cast<double>(x.size()) + eps);
  std::vector<double> o(x.size());
  for (size_t i = 0; i < x.size(); ++i) o[i] = x[i] * s * w[i];
  return o;
}

std::vector<double> MatVec(const std::vector<float>& w, const std::vector<double>& x, int64_t rows) {
  std::vector<double> o(static_cast<size_t>(rows), 0.0);
  const size_t cols = x.size();
  for (int64_t r = 0; r < rows; ++r)
    for (size_t k = 0; k < cols; ++k) o[static_cast<size_t>(r)] += w[static_cast<size_t>(r) * cols + k] * x[k];
  return o;
}

void RopeRef(std::vector<double>& v, int n_heads, int hd, int pos, double theta) {
  for (int h = 0; h < n_heads; ++h)
    for (int i = 0; i < hd / 2; ++i) {
      const double a = pos * std::pow(theta, -2.0 * i / hd);
      double& x0 = v[static_cast<size_t>(h * hd + 2 * i)];
      double& x1 = v[static_cast<size_t>(h * hd + 2 * i + 1)];
      const double y0 = x0 * std::cos(a) - x1 * std::sin(a), y1 = x0 * std::sin(a) + x1 * std::cos(a);
      x0 = y0;
      x1 = y1;
    }
}

// Runs tokens (prompt then generated, one by one after the prompt) and returns the logits after
// the prompt and after each generated token. alive[l] = prompt token indices alive at layer l,
// decided in the reference itself when `stages` is non-empty.
struct RefResult {
  std::vector<std::vector<double>> logits;
  std::vector<std::vector<int>> alive;  // per layer
  // With a budget: per segment that selects, per generated token, the blocks its later layers
  // attend over.
  std::vector<std::vector<std::vector<int>>> decode_sets;
};

// The reference's block choice: per unit of the alive tokens (1/H) sum_h |qm[h] . mean k[h / G]|,
// the maximum per block; blocks 0 and the last, then the `keep` - 2 best others (ties: lower
// index first).
// With `bounds` (DecodeKvScore::kKeyBounds) a unit's score is instead, per head, the largest
// logit any key of the unit could give: sum over channels of max(q * min k, q * max k) /
// sqrt(hd), softmax over the units, averaged over the heads.
std::set<int> RefTopBlocks(const std::vector<double>& qm, const std::vector<std::vector<double>>& k,
                           const std::vector<int>& alive, int keep, int block, int unit, int H, int hd, int G,
                           bool bounds = false) {
  const int na = static_cast<int>(alive.size());
  const int nb = (na + block - 1) / block;
  std::vector<double> bs(static_cast<size_t>(nb), 0.0);
  if (bounds) {
    const int nu = (na + unit - 1) / unit;
    std::vector<double> us(static_cast<size_t>(nu), 0.0);
    for (int h = 0; h < H; ++h) {
      std::vector<double> ub(static_cast<size_t>(nu), 0.0);
      for (int u = 0; u < nu; ++u) {
        for (int dd = 0; dd < hd; ++dd) {
          double lo = 1e300, hi = -1e300;
          for (int i = u * unit; i < std::min((u + 1) * unit, na); ++i) {
            const double kv =
                k[static_cast<size_t>(alive[static_cast<size_t>(i)])][static_cast<size_t>((h / G) * hd + dd)];
            lo = std::min(lo, kv);
            hi = std::max(hi, kv);
          }
          const double qd = qm[static_cast<size_t>(h * hd + dd)];
          ub[static_cast<size_t>(u)] += std::max(qd * lo, qd * hi) / std::sqrt(static_cast<double>(hd));
        }
      }
      const double top = *std::max_element(ub.begin(), ub.end());
      double z = 0.0;
      for (double x : ub) z += std::exp(x - top);
      for (int u = 0; u < nu; ++u) us[static_cast<size_t>(u)] += std::exp(ub[static_cast<size_t>(u)] - top) / z / H;
    }
    for (int u = 0; u < nu; ++u) {
      bs[static_cast<size_t>(u * unit / block)] =
          std::max(bs[static_cast<size_t>(u * unit / block)], us[static_cast<size_t>(u)]);
    }
  }
  for (int u0 = 0; u0 < na && !bounds; u0 += unit) {
    const int u1 = std::min(u0 + unit, na);
    double sc = 0.0;
    for (int h = 0; h < H; ++h) {
      double dot = 0.0;
      for (int dd = 0; dd < hd; ++dd) {
        double km = 0.0;
        for (int i = u0; i < u1; ++i) km += k[static_cast<size_t>(alive[static_cast<size_t>(i)])][static_cast<size_t>((h / G) * hd + dd)];
        dot += qm[static_cast<size_t>(h * hd + dd)] * km / (u1 - u0);
      }
      sc += std::fabs(dot);
    }
    bs[static_cast<size_t>(u0 / block)] = std::max(bs[static_cast<size_t>(u0 / block)], sc / H);
  }
  std::vector<int> order;
  for (int b = 1; b < nb - 1; ++b) order.push_back(b);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b2) { return bs[static_cast<size_t>(a)] > bs[static_cast<size_t>(b2)]; });
  std::set<int> keep_blocks = {0, nb - 1};
  for (int i = 0; i < keep - 2; ++i) keep_blocks.insert(order[static_cast<size_t>(i)]);
  return keep_blocks;
}

// The reference's pruning decision: the alive prompt tokens kept when `keep` blocks survive,
// scored by plain loops over the window-mean query and unit-mean keys (blocks 0 and the last
// always kept).
std::vector<int> RefKeptTokens(const std::vector<std::vector<double>>& q, const std::vector<std::vector<double>>& k,
                               const std::vector<int>& alive, int keep, int block, int unit, int window, int H,
                               int hd, int G) {
  // Plain scoring over the alive prompt tokens, cut into blocks again.
  const int na = static_cast<int>(alive.size());
  std::vector<double> qm(static_cast<size_t>(H * hd), 0.0);
  const int w = std::min(window, na);
  for (int i = na - w; i < na; ++i)
    for (int j = 0; j < H * hd; ++j) qm[static_cast<size_t>(j)] += q[static_cast<size_t>(alive[static_cast<size_t>(i)])][static_cast<size_t>(j)] / w;
  const std::set<int> keep_blocks = RefTopBlocks(qm, k, alive, keep, block, unit, H, hd, G);
  std::vector<int> next;
  for (int i = 0; i < na; ++i)
    if (keep_blocks.count(i / block)) next.push_back(alive[static_cast<size_t>(i)]);
  return next;
}

// The decode KV budget's rule (engine/pruning/decode_selection.h) in plain loops, for one
// segment at its first layer: per generated token g (in order), the prompt blocks the first layer
// attends over (first[g]) and those the segment's later layers do (rest[g]). Blocks index the
// segment's stored prompt tokens `alive`, in order; q and k are this layer's rotated rows.
struct RefSegmentSets {
  std::vector<std::vector<int>> first, rest;
};

RefSegmentSets RefDecodeSets(const std::vector<std::vector<double>>& q, const std::vector<std::vector<double>>& k,
                             const std::vector<int>& alive, int n_prompt, int total, int budget_blocks, double gamma,
                             int block, int unit, int H, int hd, int G, bool bounds) {
  RefSegmentSets r;
  const int na = static_cast<int>(alive.size()), nb = (na + block - 1) / block;
  std::vector<int> in_force(static_cast<size_t>(nb));
  std::iota(in_force.begin(), in_force.end(), 0);
  for (int t = n_prompt; t < total; ++t) {
    const std::set<int> chosen =
        RefTopBlocks(q[static_cast<size_t>(t)], k, alive, budget_blocks, block, unit, H, hd, G, bounds);
    int common = 0;
    for (int b : chosen) common += std::count(in_force.begin(), in_force.end(), b) > 0 ? 1 : 0;
    r.first.push_back(in_force);
    // The first choice replaces "every block"; later ones replace a set overlapping it < gamma.
    if (static_cast<int>(in_force.size()) > budget_blocks ||
        static_cast<double>(common) / static_cast<double>(chosen.size()) < gamma) {
      in_force.assign(chosen.begin(), chosen.end());
    }
    r.rest.push_back(in_force);
  }
  return r;
}

// A decode KV budget for RunReference: budget_blocks prompt blocks per segment (0 = none).
struct RefBudget {
  int budget_blocks = 0;
  double gamma = 0.9;
  int select_layer = 0;  // a segment chooses here when it lies inside it, else at its first layer
  bool bounds = false;   // DecodeKvScore::kKeyBounds
};

RefResult RunReference(const RefModel& m, const std::vector<int32_t>& prompt, const std::vector<int32_t>& gen,
                       const std::vector<std::pair<int, int>>& stages /* layer, keep blocks */, int block,
                       int unit, int window, bool after_attention = false, const RefBudget& budget = {}) {
  const ModelConfig& c = m.c;
  const int n = static_cast<int>(prompt.size()), hd = c.head_dim, H = c.n_heads, KVH = c.n_kv_heads, G = H / KVH;
  const int64_t d = c.d_model;
  // Per token (prompt + generated): hidden state; per layer: k, v per token.
  std::vector<int32_t> all = prompt;
  all.insert(all.end(), gen.begin(), gen.end());
  const int total = static_cast<int>(all.size());
  std::vector<std::vector<double>> x(static_cast<size_t>(total));
  for (int t = 0; t < total; ++t) {
    x[static_cast<size_t>(t)].resize(static_cast<size_t>(d));
    for (int64_t i = 0; i < d; ++i) x[static_cast<size_t>(t)][static_cast<size_t>(i)] = m.embd[static_cast<size_t>(all[static_cast<size_t>(t)] * d + i)];
  }
  RefResult res;
  RefSegmentSets seg;  // the current segment's decode sets (empty: every block)
  int seg_first = 0, seg_choose = 0;
  bool seg_selects = false;
  std::vector<int> alive(static_cast<size_t>(n));
  std::iota(alive.begin(), alive.end(), 0);
  for (int l = 0; l < c.n_layers; ++l) {
    const auto& L = m.layers[static_cast<size_t>(l)];
    std::vector<std::vector<double>> q(static_cast<size_t>(total)), k(static_cast<size_t>(total)), v(static_cast<size_t>(total));
    // Tokens processed at this layer: alive prompt tokens, then every generated token.
    std::vector<int> active = alive;
    for (int t = n; t < total; ++t) active.push_back(t);
    std::vector<int> pending;  // after-attention variant: the set the MLP and later layers see
    for (int t : active) {
      auto h = Norm(x[static_cast<size_t>(t)], L.attn_norm, c.rms_eps);
      q[static_cast<size_t>(t)] = MatVec(L.wq, h, int64_t{H} * hd);
      k[static_cast<size_t>(t)] = MatVec(L.wk, h, int64_t{KVH} * hd);
      v[static_cast<size_t>(t)] = MatVec(L.wv, h, int64_t{KVH} * hd);
      RopeRef(q[static_cast<size_t>(t)], H, hd, t, c.rope_theta);
      RopeRef(k[static_cast<size_t>(t)], KVH, hd, t, c.rope_theta);
    }
    for (const auto& [sl, keep] : stages) {
      if (sl != l) continue;
      const std::vector<int> next = RefKeptTokens(q, k, alive, keep, block, unit, window, H, hd, G);
      if (!after_attention) {
        alive = next;
        active = alive;
        for (int t = n; t < total; ++t) active.push_back(t);
      } else {
        pending = next;
      }
    }
    res.alive.push_back(alive);  // the tokens whose KV this layer holds
    // A segment starts at layer 0 and at each stage; with a budget its prompt blocks beyond it
    // are chosen per generated token.
    bool starts = l == 0;
    for (const auto& st : stages) starts = starts || st.first == l;
    if (starts) {
      seg = {};
      seg_first = seg_choose = l;
      int end = c.n_layers;
      for (const auto& st : stages)
        if (st.first > l) end = std::min(end, st.first);
      if (budget.select_layer > l && budget.select_layer < end) seg_choose = budget.select_layer;
      const int nb = (static_cast<int>(alive.size()) + block - 1) / block;
      seg_selects = budget.budget_blocks > 0 && nb > budget.budget_blocks;
    }
    if (seg_selects && l == seg_choose) {
      seg = RefDecodeSets(q, k, alive, n, total, budget.budget_blocks, budget.gamma, block, unit, H, hd, G,
                          budget.bounds);
      res.decode_sets.push_back(seg.rest);
    }
    // Up to the choosing layer every block (the choosing layer: the set in force, when it is the
    // segment's first layer).
    const bool whole = seg.rest.empty() || (l == seg_choose && l != seg_first);
    // Attention: token t sees the active tokens with index <= t (a generated token under a
    // budget: only the prompt tokens of its blocks).
    std::vector<std::vector<double>> out(static_cast<size_t>(total));
    for (int t : active) {
      std::vector<double> o(static_cast<size_t>(H * hd), 0.0);
      for (int h = 0; h < H; ++h) {
        const int g = h / G;
        std::vector<double> sc;
        std::vector<int> keys;
        std::set<int> attended;
        if (!whole && t >= n) {
          const std::vector<int>& blocks = (l == seg_choose ? seg.first : seg.rest)[static_cast<size_t>(t - n)];
          for (int b : blocks)
            for (int i = b * block; i < std::min<int>((b + 1) * block, static_cast<int>(alive.size())); ++i)
              attended.insert(alive[static_cast<size_t>(i)]);
        }
        for (int s : active) {
          if (s > t) continue;
          if (!whole && t >= n && s < n && attended.count(s) == 0) continue;
          double dot = 0.0;
          for (int dd = 0; dd < hd; ++dd) dot += q[static_cast<size_t>(t)][static_cast<size_t>(h * hd + dd)] * k[static_cast<size_t>(s)][static_cast<size_t>(g * hd + dd)];
          sc.push_back(dot / std::sqrt(static_cast<double>(hd)));
          keys.push_back(s);
        }
        const double mx = *std::max_element(sc.begin(), sc.end());
        double sum = 0.0;
        for (double& e : sc) sum += (e = std::exp(e - mx));
        for (size_t i = 0; i < keys.size(); ++i)
          for (int dd = 0; dd < hd; ++dd) o[static_cast<size_t>(h * hd + dd)] += sc[i] / sum * v[static_cast<size_t>(keys[i])][static_cast<size_t>(g * hd + dd)];
      }
      out[static_cast<size_t>(t)] = o;
    }
    for (int t : active) {
      auto proj = MatVec(L.wo, out[static_cast<size_t>(t)], d);
      for (int64_t i = 0; i < d; ++i) x[static_cast<size_t>(t)][static_cast<size_t>(i)] += proj[static_cast<size_t>(i)];
    }
    if (!pending.empty()) {
      alive = pending;
      active = alive;
      for (int t = n; t < total; ++t) active.push_back(t);
    }
    for (int t : active) {
      auto h = Norm(x[static_cast<size_t>(t)], L.ffn_norm, c.rms_eps);
      auto g = MatVec(L.wg, h, c.d_ff), u = MatVec(L.wu, h, c.d_ff);
      for (int f = 0; f < c.d_ff; ++f) g[static_cast<size_t>(f)] = g[static_cast<size_t>(f)] / (1.0 + std::exp(-g[static_cast<size_t>(f)])) * u[static_cast<size_t>(f)];
      auto down = MatVec(L.wd, g, d);
      for (int64_t i = 0; i < d; ++i) x[static_cast<size_t>(t)][static_cast<size_t>(i)] += down[static_cast<size_t>(i)];
    }
  }
  auto logits_of = [&](int t) {
    auto h = Norm(x[static_cast<size_t>(t)], m.out_norm, c.rms_eps);
    return MatVec(m.lm_head, h, c.vocab_size);
  };
  res.logits.push_back(logits_of(n - 1));
  for (int t = n; t < total; ++t) res.logits.push_back(logits_of(t));
  return res;
}

using testing::RandomIds;
using testing::TinyEngine;

TEST(PrunedForward, KeepEverythingIsDenseBitForBit) {
  auto e = TinyEngine();
  auto ids = RandomIds(300, e->config().vocab_size, 11);
  auto dense = e->Prefill(1, ids);
  ASSERT_TRUE(dense.ok());
  PruningRequest keep_all;
  keep_all.mode = PruningMode::kExplicit;
  keep_all.config.stages = {{1, 1.0, true}};
  auto pruned = e->Prefill(2, ids, keep_all);
  ASSERT_TRUE(pruned.ok()) << pruned.status().ToString();
  EXPECT_EQ(0, std::memcmp(dense->logits.data(), pruned->logits.data(), dense->logits.size() * sizeof(float)));
  EXPECT_EQ(dense->kv_bytes, pruned->kv_bytes);
  std::vector<float> a, b;
  DecodeItem i1{1, 7}, i2{2, 7};
  ASSERT_TRUE(e->Decode({&i1, 1}, &a).ok());
  ASSERT_TRUE(e->Decode({&i2, 1}, &b).ok());
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)));
}

// The largest |ours - reference| over the steps' logits, each step's own maximum expected under
// `tol`.
double WorstStepDiff(const std::vector<std::vector<float>>& ours, const std::vector<std::vector<double>>& ref,
                     double tol) {
  double worst = 0.0;
  for (size_t s = 0; s < ours.size(); ++s) {
    double max_diff = 0.0;
    for (size_t i = 0; i < ours[s].size(); ++i) max_diff = std::max(max_diff, std::fabs(ours[s][i] - ref[s][i]));
    EXPECT_LT(max_diff, tol) << "step " << s;
    worst = std::max(worst, max_diff);
  }
  return worst;
}

void CheckAgainstReference(bool after_attention) {
  auto e = TinyEngine();
  auto src = OpenWeights("synthetic:tiny", 1234);
  ASSERT_TRUE(src.ok());
  RefModel ref = LoadRef(**src);
  const int vocab = e->config().vocab_size;
  // 600 tokens = 9 full blocks + a ragged tail of 24.
  auto ids = RandomIds(600, vocab, 21);
  PruningRequest req;
  req.mode = PruningMode::kExplicit;
  req.config.stages = {{1, 320, false}, {2, 192, false}};  // 5 blocks, then 3
  req.config.after_attention = after_attention;
  auto pre = e->Prefill(1, ids, req);
  ASSERT_TRUE(pre.ok()) << pre.status().ToString();
  ASSERT_EQ(pre->pruning.stages.size(), 2u);
  EXPECT_EQ(pre->pruning.stages[0].tokens_kept, 4 * 64 + 24);
  EXPECT_EQ(pre->pruning.stages[1].tokens_kept, 2 * 64 + 24);
  // Per-layer KV counts.
  EXPECT_EQ(e->kv().Table(1, 0).n_tokens, 600);
  EXPECT_EQ(e->kv().Table(1, 1).n_tokens, after_attention ? 600 : 280);
  EXPECT_EQ(e->kv().Table(1, 2).n_tokens, after_attention ? 280 : 152);
  EXPECT_LT(pre->pruning.kv_bytes, pre->pruning.dense_kv_bytes);

  std::vector<int32_t> gen = {5, 77, 123, 9};
  std::vector<std::vector<float>> ours = {pre->logits};
  for (int32_t t : gen) {
    std::vector<float> lg;
    DecodeItem it{1, t};
    ASSERT_TRUE(e->Decode({&it, 1}, &lg).ok());
    ours.push_back(lg);
    // Generated tokens are never pruned: one more KV entry at every layer.
  }
  EXPECT_EQ(e->kv().Table(1, 2).n_tokens, (after_attention ? 280 : 152) + 4);

  const std::vector<std::pair<int, int>> stages = {{1, 5}, {2, 3}};
  RefResult r = RunReference(ref, ids, gen, stages, 64, 8, 4, after_attention);
  // Positions preserved and sink / last block kept; KV per layer as the engine stores it.
  const size_t kv1 = after_attention ? 600u : 280u, kv2 = after_attention ? 280u : 152u;
  ASSERT_EQ(r.alive[1].size(), kv1);
  ASSERT_EQ(r.alive[2].size(), kv2);
  EXPECT_EQ(r.alive[2].front(), 0);
  EXPECT_EQ(r.alive[2].back(), 599);
  const double worst = WorstStepDiff(ours, r.logits, 1e-4);
  // And pruning really changed the logits: the comparison above is not dense vs dense.
  RefResult dense = RunReference(ref, ids, {}, {}, 64, 8, 4);
  double dd = 0.0;
  for (int i = 0; i < vocab; ++i)
    dd = std::max(dd, std::fabs(dense.logits[0][static_cast<size_t>(i)] - r.logits[0][static_cast<size_t>(i)]));
  std::printf("engine vs masked reference: max |diff| %.2e; pruned vs dense reference: %.2e\n", worst, dd);
  EXPECT_GT(dd, 0.1);
}

TEST(PrunedForward, DenseMatchesPlainReference) {
  auto e = TinyEngine();
  auto src = OpenWeights("synthetic:tiny", 1234);
  ASSERT_TRUE(src.ok());
  RefModel ref = LoadRef(**src);
  for (int n : {1, 2, 10, 100}) {  // the row (decode) kernel and the GEMM kernel
    auto ids = RandomIds(n, e->config().vocab_size, 21);
    auto pre = e->Prefill(100 + n, ids);
    ASSERT_TRUE(pre.ok());
    RefResult r = RunReference(ref, ids, {}, {}, 64, 8, 4);
    double md = 0.0;
    for (int i = 0; i < e->config().vocab_size; ++i)
      md = std::max(md, std::fabs(pre->logits[static_cast<size_t>(i)] - r.logits[0][static_cast<size_t>(i)]));
    EXPECT_LT(md, 1e-4) << n << " tokens";
  }
}

TEST(PrunedForward, PrefillAndDecodeMatchMaskedReference) { CheckAgainstReference(false); }
TEST(PrunedForward, AfterAttentionVariantKeepsThePruningLayersKv) { CheckAgainstReference(true); }

TEST(PrunedForward, ShortPromptRunsDense) {
  auto e = TinyEngine();
  auto ids = RandomIds(100, e->config().vocab_size, 2);
  PruningRequest req;
  req.mode = PruningMode::kExplicit;
  req.config.stages = {{1, 256, false}};
  auto p = e->Prefill(1, ids, req);
  ASSERT_TRUE(p.ok());
  EXPECT_FALSE(p->pruning.applied);
  EXPECT_EQ(e->kv().Table(1, 2).n_tokens, 100);
}

TEST(PrunedForward, InvalidExplicitScheduleIsRejectedAndLeavesNothing) {
  auto e = TinyEngine();
  auto ids = RandomIds(300, e->config().vocab_size, 2);
  PruningRequest req;
  req.mode = PruningMode::kExplicit;
  req.config.stages = {{2, 256, false}, {1, 128, false}};
  const int64_t free0 = e->kv().FreeBlocks();
  EXPECT_EQ(e->Prefill(1, ids, req).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(e->kv().FreeBlocks(), free0);
  EXPECT_FALSE(e->kv().HasSequence(1));
}


// Decode under a KV budget (engine/pruning/decode_selection.h) against the reference's own
// rule in plain loops: the blocks each segment chooses at every step, and the logits of
// attention over them.
std::unique_ptr<Engine> BudgetEngine(int64_t budget, double gamma, int select_layer = 0,
                                     DecodeKvScore score = DecodeKvScore::kUnitMeans) {
  EngineOptions o;
  o.model = "synthetic:tiny";
  o.kv_tokens = 4096;
  o.backend.threads = 2;
  o.decode_kv_budget = budget;
  o.decode_kv_gamma = gamma;
  o.decode_kv_select_layer = select_layer;
  o.decode_kv_score = score;
  auto e = Engine::Create(o);
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  return e.ok() ? std::move(e).value() : nullptr;
}

void CheckBudgetAgainstReference(bool pruned, double gamma, int select_layer = 0, bool bounds = false) {
  // 3 blocks per segment: the sink, the last, one chosen.
  auto e = BudgetEngine(192, gamma, select_layer, bounds ? DecodeKvScore::kKeyBounds : DecodeKvScore::kUnitMeans);
  ASSERT_NE(e, nullptr);
  auto src = OpenWeights("synthetic:tiny", 1234);
  ASSERT_TRUE(src.ok());
  RefModel ref = LoadRef(**src);
  const int vocab = e->config().vocab_size;
  auto ids = RandomIds(600, vocab, 21);  // 10 blocks (the last ragged)
  PruningRequest req;
  std::vector<std::pair<int, int>> stages;
  if (pruned) {
    req.mode = PruningMode::kExplicit;
    req.config.stages = {{1, 320, false}, {2, 192, false}};  // 5 blocks at layer 1, 3 (fits) from 2
    stages = {{1, 5}, {2, 3}};
  }
  auto pre = e->Prefill(1, ids, req);
  ASSERT_TRUE(pre.ok()) << pre.status().ToString();
  const DecodeSelection* sel = e->decode_selection(1);
  ASSERT_NE(sel, nullptr);
  const size_t n_seg = pruned ? 2u : 1u;  // segments whose prompt exceeds the budget
  ASSERT_EQ(sel->segments().size(), n_seg);
  std::vector<int32_t> gen = {5, 77, 123, 9, 299, 41, 8, 250};
  std::vector<std::vector<float>> ours = {pre->logits};
  std::vector<std::vector<std::vector<int>>> sets(n_seg);
  for (int32_t t : gen) {
    std::vector<float> lg;
    DecodeItem it{1, t};
    ASSERT_TRUE(e->Decode({&it, 1}, &lg).ok());
    ours.push_back(lg);
    for (size_t s = 0; s < n_seg; ++s) {
      const std::vector<int32_t>& r = sel->segments()[s].first_set;  // = this step's rest_set
      sets[s].emplace_back(r.begin(), r.end());
    }
  }
  RefResult r = RunReference(ref, ids, gen, stages, 64, 8, 4, false, {3, gamma, select_layer, bounds});
  ASSERT_EQ(r.decode_sets.size(), n_seg);
  for (size_t s = 0; s < n_seg; ++s) EXPECT_EQ(sets[s], r.decode_sets[s]) << "segment " << s;
  const double worst = WorstStepDiff(ours, r.logits, 1e-4);
  // The budget changed the decode: the comparison is not all blocks against all blocks.
  RefResult all = RunReference(ref, ids, gen, stages, 64, 8, 4);
  double dd = 0.0;
  for (size_t s = 1; s < ours.size(); ++s)
    for (int i = 0; i < vocab; ++i)
      dd = std::max(dd, std::fabs(all.logits[s][static_cast<size_t>(i)] - r.logits[s][static_cast<size_t>(i)]));
  const DecodeSelectionStats& st = e->decode_selection_stats();
  std::printf("budget 192, gamma %.1f: engine vs reference max |diff| %.2e; budget vs every block %.2e; "
              "%lld selections, %lld kept by gamma, %lld changed\n",
              gamma, worst, dd, static_cast<long long>(st.selections), static_cast<long long>(st.kept_by_gamma),
              static_cast<long long>(st.changed));
  EXPECT_EQ(st.selections, static_cast<int64_t>(n_seg * gen.size()));
  EXPECT_EQ(st.kept_by_gamma + st.changed, st.selections);
  if (gamma == 0.0) EXPECT_EQ(st.changed, static_cast<int64_t>(n_seg));  // the first choice only
  if (gamma == 1.0) EXPECT_GT(st.changed, static_cast<int64_t>(n_seg));
  EXPECT_GT(dd, 1e-3);
  ASSERT_TRUE(e->Release(1).ok());
  EXPECT_EQ(e->decode_selection(1), nullptr);
  EXPECT_EQ(e->kv().FreeBlocks(), e->kv().TotalBlocks());
}

// SelectBlocks against a plain reference (sink, last, then the middle blocks by score with ties
// to the lower index, as a stable sort orders them), with many ties and budgets up to past n.
TEST(BlockScorer, SelectBlocksMatchesAStableSortWithTies) {
  std::mt19937 rng(11);
  for (int round = 0; round < 200; ++round) {
    const int n = 1 + static_cast<int>(rng() % 300);
    std::vector<float> scores(static_cast<size_t>(n));
    for (float& v : scores) v = static_cast<float>(rng() % 7);  // few values: many ties
    const int64_t keep = static_cast<int64_t>(rng() % static_cast<uint32_t>(n + 3));
    std::vector<int32_t> want;
    if (keep >= n) {
      for (int b = 0; b < n; ++b) want.push_back(b);
    } else {
      want.push_back(0);
      if (n > 1) want.push_back(n - 1);
      std::vector<int32_t> middle;
      for (int b = 1; b < n - 1; ++b) middle.push_back(b);
      std::stable_sort(middle.begin(), middle.end(),
                       [&](int32_t a, int32_t b) { return scores[static_cast<size_t>(a)] > scores[static_cast<size_t>(b)]; });
      const int64_t more = keep - static_cast<int64_t>(want.size());
      for (int64_t i = 0; i < more && i < static_cast<int64_t>(middle.size()); ++i) want.push_back(middle[static_cast<size_t>(i)]);
      std::sort(want.begin(), want.end());
    }
    ASSERT_EQ(SelectBlocks(scores, keep), want) << "n " << n << " keep " << keep;
  }
}

TEST(DecodeBudget, DenseDecodeMatchesTheReferenceRule) { CheckBudgetAgainstReference(false, 0.9); }
TEST(DecodeBudget, PrunedDecodeMatchesTheReferenceRule) { CheckBudgetAgainstReference(true, 0.9); }
TEST(DecodeBudget, GammaOneFollowsEveryChoice) { CheckBudgetAgainstReference(true, 1.0); }
TEST(DecodeBudget, GammaZeroKeepsTheFirstChoice) { CheckBudgetAgainstReference(true, 0.0); }
// Segment 0 (layers 0-2 dense) chooses at layer 1: layers 0 and 1 read every block, layer 2 the choice.
TEST(DecodeBudget, ALaterSelectLayerChoosesThere) { CheckBudgetAgainstReference(false, 0.9, 1); }
TEST(DecodeBudget, KeyBoundScoresDenseMatchTheReferenceRule) { CheckBudgetAgainstReference(false, 0.9, 0, true); }
TEST(DecodeBudget, KeyBoundScoresPrunedMatchTheReferenceRule) { CheckBudgetAgainstReference(true, 1.0, 0, true); }

// The bound holds: no key of a unit gives any head a larger logit than that unit's bound, and
// the needle (one key along the query) puts its block first.
TEST(DecodeBudget, KeyBoundsBoundEveryKeyAndFindTheNeedle) {
  const int H = 4, KVH = 2, hd = 16, kv_dim = KVH * hd, unit = 8, n = 200;
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> keys(static_cast<size_t>(n * kv_dim)), q(static_cast<size_t>(H * hd));
  for (float& x : keys) x = nd(rng);
  for (float& x : q) x = nd(rng);
  const std::vector<float> b = UnitKeyBounds(keys, n, kv_dim, unit);
  const int64_t nu = (n + unit - 1) / unit;
  ASSERT_EQ(b.size(), static_cast<size_t>(nu * 2 * kv_dim));
  for (int t = 0; t < n; ++t) {
    const int64_t u = t / unit;
    for (int c = 0; c < kv_dim; ++c) {
      EXPECT_LE(b[static_cast<size_t>(u * 2 * kv_dim + c)], keys[static_cast<size_t>(t * kv_dim + c)]);
      EXPECT_GE(b[static_cast<size_t>(u * 2 * kv_dim + kv_dim + c)], keys[static_cast<size_t>(t * kv_dim + c)]);
    }
    for (int h = 0; h < H; ++h) {
      const int g = h / (H / KVH);
      double dot = 0.0, ub = 0.0;
      for (int d = 0; d < hd; ++d) {
        const float qd = q[static_cast<size_t>(h * hd + d)];
        dot += qd * keys[static_cast<size_t>(t * kv_dim + g * hd + d)];
        ub += std::max(qd * b[static_cast<size_t>(u * 2 * kv_dim + g * hd + d)],
                       qd * b[static_cast<size_t>(u * 2 * kv_dim + kv_dim + g * hd + d)]);
      }
      EXPECT_LE(dot, ub + 1e-4) << "token " << t << " head " << h;
    }
  }
  // Token 130 (block 2 of 64-token blocks) gets keys along every head's query, scaled up.
  for (int g = 0; g < KVH; ++g)
    for (int d = 0; d < hd; ++d)
      keys[static_cast<size_t>(130 * kv_dim + g * hd + d)] = 4.0f * q[static_cast<size_t>(g * 2 * hd + d)];
  const std::vector<float> scores =
      KeyBoundScores(q.data(), UnitKeyBounds(keys, n, kv_dim, unit), nu, H, KVH, hd, 64 / unit);
  ASSERT_EQ(scores.size(), 4u);
  EXPECT_EQ(std::max_element(scores.begin(), scores.end()) - scores.begin(), 2);
  EXPECT_EQ(ParseDecodeKvScore("bounds").value(), DecodeKvScore::kKeyBounds);
  EXPECT_EQ(ParseDecodeKvScore("means").value(), DecodeKvScore::kUnitMeans);
  EXPECT_EQ(ParseDecodeKvScore("quest").status().code(), StatusCode::kInvalidArgument);
}

// Decode logits of `gen` after `ids` (pruned or not) on an engine with that budget and gamma.
std::vector<std::vector<float>> DecodeLogits(int64_t budget, double gamma, bool pruned) {
  auto e = BudgetEngine(budget, gamma);
  std::vector<std::vector<float>> out;
  if (e == nullptr) return out;
  auto ids = RandomIds(600, e->config().vocab_size, 21);
  PruningRequest req;
  if (pruned) {
    req.mode = PruningMode::kExplicit;
    req.config.stages = {{1, 320, false}, {2, 192, false}};
  }
  auto pre = e->Prefill(1, ids, req);
  EXPECT_TRUE(pre.ok()) << pre.status().ToString();
  if (!pre.ok()) return out;
  for (int32_t t : {5, 77, 123, 9}) {
    std::vector<float> lg;
    DecodeItem it{1, t};
    EXPECT_TRUE(e->Decode({&it, 1}, &lg).ok());
    out.push_back(std::move(lg));
  }
  return out;
}

TEST(DecodeBudget, BudgetCoveringThePromptIsBitForBit) {
  for (bool pruned : {false, true}) {
    SCOPED_TRACE(pruned ? "pruned" : "dense");
    const auto base = DecodeLogits(0, 0.9, pruned);
    ASSERT_EQ(base.size(), 4u);
    // A budget of the whole prompt selects nothing.
    EXPECT_EQ(DecodeLogits(640, 0.9, pruned), base);
    EXPECT_NE(DecodeLogits(64 * 3, 0.9, pruned), base);
  }
}

// With a host tier the selectable prompt blocks are written through after the prefill and the
// gpu tier holds only each segment's chosen set: the tokens' logits stay bit for bit those of
// the all-resident selection (the same blocks in the same order), the gpu blocks are exactly the
// chosen ones plus the rest of the table, the bytes counted are the blocks moved, and a swap out
// and in midway changes nothing.
struct TieredRun {
  std::vector<std::vector<float>> logits;
  std::vector<int64_t> gpu_blocks;  // after each step
  std::vector<int64_t> expected_blocks;
  DecodeSelectionStats stats;
  kv::KvStoreStats kv;
  int64_t written_through = 0;  // selectable blocks of the tiered layers (what is written through)
  int64_t block_bytes = 0;
};

TieredRun RunTiered(bool pruned, double gamma, int64_t host_tokens, bool drain_first, bool swap_midway,
                    int resident_layers = -1) {
  EngineOptions o;
  if (resident_layers >= 0) o.decode_kv_resident_layers = resident_layers;
  o.model = "synthetic:tiny";
  o.kv_tokens = 4096;
  o.host_kv_tokens = host_tokens;
  o.backend.threads = 2;
  o.decode_kv_budget = 192;
  o.decode_kv_gamma = gamma;
  TieredRun out;
  auto created = Engine::Create(o);
  EXPECT_TRUE(created.ok()) << created.status().ToString();
  if (!created.ok()) return out;
  std::unique_ptr<Engine> e = std::move(created).value();
  auto ids = RandomIds(600, e->config().vocab_size, 21);
  PruningRequest req;
  if (pruned) {
    req.mode = PruningMode::kExplicit;
    req.config.stages = {{1, 320, false}, {2, 192, false}};
  }
  auto pre = e->Prefill(1, ids, req);
  EXPECT_TRUE(pre.ok()) << pre.status().ToString();
  if (!pre.ok()) return out;
  out.logits.push_back(pre->logits);
  if (drain_first) e->kv().Drain();
  out.block_bytes = static_cast<int64_t>(e->kv().layout().BlockBytes());
  const DecodeSelection* sel = e->decode_selection(1);
  EXPECT_NE(sel, nullptr);
  if (sel == nullptr) return out;
  if (sel->tiered()) {
    for (const SegmentSelection& seg : sel->segments()) {
      out.written_through += static_cast<int64_t>(seg.tier_layers.size()) * (seg.prompt_blocks - 1);
    }
  }
  const std::vector<int32_t> gen = {5, 77, 123, 9, 299, 41, 8, 250};
  for (size_t k = 0; k < gen.size(); ++k) {
    if (swap_midway && k == gen.size() / 2) {
      EXPECT_TRUE(e->SwapOut(1).ok());
      EXPECT_FALSE(e->kv().Resident(1));
      EXPECT_TRUE(e->SwapIn(1).ok());
    }
    std::vector<float> lg;
    DecodeItem it{1, gen[k]};
    const Status st = e->Decode({&it, 1}, &lg);
    EXPECT_TRUE(st.ok()) << st.ToString();
    out.logits.push_back(std::move(lg));
    e->kv().Drain();
    out.gpu_blocks.push_back(e->kv().GpuBlocks(1));
    // Expected: every table's blocks, less the selectable ones outside the set at tier layers.
    int64_t want = 0;
    for (int l = 0; l < e->config().n_layers; ++l) want += e->kv().Table(1, l).capacity();
    if (sel->tiered()) {
      for (const SegmentSelection& seg : sel->segments()) {
        const int64_t kept = std::lower_bound(seg.rest_set.begin(), seg.rest_set.end(), seg.prompt_blocks - 1) -
                             seg.rest_set.begin();
        want -= static_cast<int64_t>(seg.tier_layers.size()) * (seg.prompt_blocks - 1 - kept);
      }
    }
    out.expected_blocks.push_back(want);
  }
  out.stats = e->decode_selection_stats();
  out.kv = e->kv().Stats();
  EXPECT_TRUE(e->Release(1).ok());
  const kv::KvStoreStats after = e->kv().Stats();
  EXPECT_EQ(after.gpu.pool.used_blocks, 0);
  EXPECT_EQ(after.host.pool.used_blocks, 0);
  return out;
}

void CheckTiered(bool pruned, double gamma, int resident_layers = -1) {
  const TieredRun resident = RunTiered(pruned, gamma, 0, true, false, resident_layers);
  ASSERT_EQ(resident.logits.size(), 9u);
  for (bool drain : {true, false}) {
    for (bool swap : {false, true}) {
      SCOPED_TRACE(std::string(drain ? "write-through landed first" : "write-through in flight") +
                   (swap ? ", swapped midway" : ""));
      const TieredRun t = RunTiered(pruned, gamma, 8192, drain, swap, resident_layers);
      ASSERT_EQ(t.logits.size(), resident.logits.size());
      for (size_t s = 0; s < t.logits.size(); ++s) EXPECT_EQ(t.logits[s], resident.logits[s]) << "step " << s;
      // Once the write-through has landed (every step drains), the gpu tier holds exactly the sets;
      // so it does from the step after a swap-in on (blocks still being fetched when that step
      // chooses are given up at the next choice).
      for (size_t s = drain ? 0 : 1; s < t.gpu_blocks.size(); ++s) {
        if (swap && s == t.gpu_blocks.size() / 2) {
          EXPECT_LE(t.gpu_blocks[s], resident.gpu_blocks[s]) << "step " << s;
          continue;
        }
        EXPECT_EQ(t.gpu_blocks[s], t.expected_blocks[s]) << "step " << s;
      }
      EXPECT_LT(t.gpu_blocks.back(), resident.gpu_blocks.back());
      EXPECT_EQ(t.gpu_blocks.size(), resident.gpu_blocks.size());
      const int64_t block_bytes = t.block_bytes;
      EXPECT_GT(t.written_through, 0);
      EXPECT_GT(t.stats.blocks_fetched + t.stats.blocks_released, 0);
      if (!swap) {
        // Nothing but the write-through went to the host, and every byte in is a fetched block.
        EXPECT_EQ(t.kv.transfers.bytes[0], t.stats.blocks_fetched * block_bytes);
        EXPECT_EQ(t.kv.transfers.bytes[1], t.written_through * block_bytes);
      }
      EXPECT_EQ(t.kv.selections, t.stats.selections);
      EXPECT_EQ(t.kv.selections_kept, t.stats.kept_by_gamma);
      EXPECT_EQ(t.kv.selection_overlap.counts.back(), t.stats.selections);
      EXPECT_EQ(t.kv.transfers.prefetch_on_time + t.kv.transfers.prefetch_late, t.kv.transfers.jobs[0]);
    }
  }
}

TEST(DecodeBudget, TieredDenseDecodeHoldsOnlyTheChosenBlocks) { CheckTiered(false, 0.9); }
TEST(DecodeBudget, TieredPrunedDecodeHoldsOnlyTheChosenBlocks) { CheckTiered(true, 1.0); }
// Every layer after the choosing one tiered, and two of them resident (more than some segments have).
TEST(DecodeBudget, TieredDecodeWithNoResidentLayers) { CheckTiered(false, 0.9, 0); }
TEST(DecodeBudget, TieredDecodeWithTwoResidentLayers) { CheckTiered(false, 1.0, 2); }

// A decode under a tiered budget batched with another sequence's prompt in one pass: the last
// layer then runs on each sequence's last row (Model::TailAttention), and the decode must read
// its chosen blocks there too (the others have no gpu slot), giving the logits it gets alone.
TEST(DecodeBudget, ATieredDecodeBatchedWithAPromptReadsItsChosenBlocks) {
  std::vector<std::vector<float>> logits[2];
  for (int mixed = 0; mixed < 2; ++mixed) {
    EngineOptions o;
    o.model = "synthetic:tiny";
    o.kv_tokens = 4096;
    o.host_kv_tokens = 8192;
    o.backend.threads = 2;
    o.decode_kv_budget = 192;
    auto created = Engine::Create(o);
    ASSERT_TRUE(created.ok()) << created.status().ToString();
    std::unique_ptr<Engine> e = std::move(created).value();
    const auto ids = RandomIds(600, e->config().vocab_size, 21);
    const auto other = RandomIds(100, e->config().vocab_size, 22);
    ASSERT_TRUE(e->Prefill(1, ids, PruningRequest{}).ok());
    e->kv().Drain();
    const int32_t gen[] = {5, 77, 123, 9};
    for (size_t k = 0; k < std::size(gen); ++k) {
      std::vector<float> lg;
      if (mixed == 1 && k == 2) {
        StepItem items[2];
        items[0].kind = StepItem::Kind::kDecode;
        items[0].seq = 1;
        items[0].tokens = std::span<const int32_t>(&gen[k], 1);
        items[1].kind = StepItem::Kind::kPrefill;
        items[1].seq = 2;
        items[1].tokens = other;
        std::vector<StepOutput> out;
        ASSERT_TRUE(e->Step(items, 0, &out).ok());
        ASSERT_TRUE(out[0].status.ok()) << out[0].status.ToString();
        ASSERT_TRUE(out[1].status.ok() && out[1].done) << out[1].status.ToString();
        lg = out[0].logits;
      } else {
        DecodeItem it{1, gen[k]};
        ASSERT_TRUE(e->Decode({&it, 1}, &lg).ok());
      }
      e->kv().Drain();
      logits[mixed].push_back(std::move(lg));
    }
    ASSERT_TRUE(e->Release(1).ok());
    if (mixed == 1) ASSERT_TRUE(e->Release(2).ok());
    EXPECT_EQ(e->kv().Stats().gpu.pool.used_blocks, 0);
  }
  ASSERT_EQ(logits[0].size(), logits[1].size());
  for (size_t k = 0; k < logits[0].size(); ++k) {
    ASSERT_EQ(logits[0][k].size(), logits[1][k].size());
    float worst = 0.0f;
    for (size_t j = 0; j < logits[0][k].size(); ++j) worst = std::max(worst, std::abs(logits[0][k][j] - logits[1][k][j]));
    // Batched products may round differently; attending other blocks would move them far more.
    EXPECT_LT(worst, 1e-3f) << "step " << k;
  }
}

TEST(DecodeBudget, AHostTierTooSmallLeavesTheSequenceResident) {
  const TieredRun resident = RunTiered(false, 0.9, 0, true, false);
  const TieredRun t = RunTiered(false, 0.9, 64, true, false);  // one block per layer: no room
  EXPECT_EQ(t.logits, resident.logits);
  EXPECT_EQ(t.gpu_blocks, resident.gpu_blocks);
  EXPECT_EQ(t.kv.transfers.bytes[1], 0);
}

TEST(DecodeBudget, ReselectAppliesGammaToTheChosenBlocks) {
  const std::vector<float> scores = {0.1f, 0.9f, 0.2f, 0.8f, 0.3f, 0.05f};
  // Chosen with 4 blocks: 0 and 5 always, then 1 and 3.
  SelectionDecision d = Reselect(scores, 4, {0, 1, 2, 5}, 0.9);
  EXPECT_EQ(d.set, (std::vector<int32_t>{0, 1, 3, 5}));
  EXPECT_DOUBLE_EQ(d.overlap, 0.75);
  EXPECT_FALSE(d.kept);
  EXPECT_EQ(d.entering, 1);
  d = Reselect(scores, 4, {0, 1, 2, 5}, 0.75);
  EXPECT_TRUE(d.kept);
  EXPECT_EQ(d.set, (std::vector<int32_t>{0, 1, 2, 5}));
  d = Reselect(scores, 4, {0, 1, 2, 5}, 0.0);
  EXPECT_TRUE(d.kept);
  d = Reselect(scores, 4, {0, 1, 3, 5}, 1.0);
  EXPECT_TRUE(d.kept);  // the chosen set is the one in force
}

TEST(DecodeBudget, BadOptionsAreRefused) {
  EngineOptions o;
  o.model = "synthetic:tiny";
  o.decode_kv_budget = -5;
  EXPECT_EQ(Engine::Create(o).status().code(), StatusCode::kInvalidArgument);
  o.decode_kv_budget = 128;
  o.decode_kv_gamma = 1.5;
  EXPECT_EQ(Engine::Create(o).status().code(), StatusCode::kInvalidArgument);
  auto e = TinyEngine();
  ASSERT_NE(e, nullptr);
  PruningRequest req;
  req.decode_kv_budget = -7;
  auto pre = e->Prefill(1, RandomIds(100, e->config().vocab_size, 3), req);
  EXPECT_EQ(pre.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(e->kv().FreeBlocks(), e->kv().TotalBlocks());
}

}  // namespace
}  // namespace slim
