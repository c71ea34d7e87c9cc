// Pruning schedules: validation, parsing, resolution against a prompt length.
#include "engine/pruning/schedule.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <sstream>

namespace slim {

Status PruningConfig::Validate(int n_layers) const {
  if (block_tokens < 8 || block_tokens > 1024) return InvalidArgumentError("pruning: block size must be in [8, 1024]");
  if (unit_tokens < 1 || block_tokens % unit_tokens != 0) {
    return InvalidArgumentError("pruning: token unit must be >= 1 and divide the block size");
  }
  if (query_window < 1 || query_window > 64) return InvalidArgumentError("pruning: query window must be in [1, 64]");
  if (stages.empty()) return InvalidArgumentError("pruning: the schedule has no stages");
  if (stages.size() > 16) return InvalidArgumentError("pruning: at most 16 stages");
  for (size_t i = 0; i < stages.size(); ++i) {
    const PruneStage& s = stages[i];
    const std::string where = "pruning stage " + std::to_string(i) + " (layer " + std::to_string(s.layer) + ")";
    if (s.layer < 1 || s.layer >= n_layers) {
      return InvalidArgumentError(where + ": layer must be in [1, " + std::to_string(n_layers) + ")");
    }
    if (i > 0 && s.layer <= stages[i - 1].layer) return InvalidArgumentError(where + ": layers must increase");
    if (!std::isfinite(s.keep)) return InvalidArgumentError(where + ": keep is not finite");
    if (s.fraction) {
      if (s.keep <= 0.0 || s.keep > 1.0) return InvalidArgumentError(where + ": keep fraction must be in (0, 1]");
    } else if (s.keep < 2.0 * block_tokens) {
      return InvalidArgumentError(where + ": keep must be at least two blocks (" + std::to_string(2 * block_tokens) +
                                  " tokens)");
    }
    if (i > 0 && s.fraction == stages[i - 1].fraction && s.keep >= stages[i - 1].keep) {
      return InvalidArgumentError(where + ": keeps must decrease");
    }
  }
  return OkStatus();
}

std::string PruningConfig::ToString() const {
  std::ostringstream os;
  for (size_t i = 0; i < stages.size(); ++i) {
    if (i) os << ",";
    os << stages[i].layer << ":";
    if (stages[i].fraction) {
      std::ostringstream v;
      v << stages[i].keep;
      std::string t = v.str();
      if (t.find('.') == std::string::npos) t += ".0";
      os << t;
    } else {
      os << static_cast<int64_t>(stages[i].keep);
    }
  }
  // Parameters that differ from the defaults follow the stages.
  const PruningConfig d;
  if (query_window != d.query_window) os << ",window=" << query_window;
  if (unit_tokens != d.unit_tokens) os << ",unit=" << unit_tokens;
  if (after_attention) os << ",after";
  if (attention_scores) os << ",score=attn";
  return os.str();
}

StatusOr<PruningConfig> PruningConfig::Parse(const std::string& text) {
  PruningConfig c;
  std::stringstream ss(text);
  std::string item;
  auto parse_int = [](const std::string& v, const std::string& what) -> StatusOr<int> {
    char* end = nullptr;
    const long x = std::strtol(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0' || x <= 0 || x > 1 << 20) {
      return InvalidArgumentError("pruning schedule: bad " + what + " '" + v + "'");
    }
    return static_cast<int>(x);
  };
  while (std::getline(ss, item, ',')) {
    if (item == "after") {
      c.after_attention = true;
      continue;
    }
    if (item == "score=attn" || item == "score=keymean") {
      c.attention_scores = item == "score=attn";
      continue;
    }
    if (item.rfind("window=", 0) == 0) {
      SLIM_ASSIGN_OR_RETURN(c.query_window, parse_int(item.substr(7), "window"));
      continue;
    }
    if (item.rfind("unit=", 0) == 0) {
      SLIM_ASSIGN_OR_RETURN(c.unit_tokens, parse_int(item.substr(5), "unit"));
      continue;
    }
    const size_t colon = item.find(':');
    if (colon == std::string::npos) {
      return InvalidArgumentError("pruning schedule: '" + item + "' is not layer:keep, window=N, unit=N, after or score=attn|keymean");
    }
    const std::string ls = item.substr(0, colon), ks = item.substr(colon + 1);
    char* end = nullptr;
    const long layer = std::strtol(ls.c_str(), &end, 10);
    if (ls.empty() || *end != '\0') return InvalidArgumentError("pruning schedule: bad layer '" + ls + "'");
    const double keep = std::strtod(ks.c_str(), &end);
    if (ks.empty() || *end != '\0') return InvalidArgumentError("pruning schedule: bad keep '" + ks + "'");
    PruneStage st;
    st.layer = static_cast<int>(layer);
    st.keep = keep;
    st.fraction = ks.find('.') != std::string::npos;
    c.stages.push_back(st);
  }
  if (c.stages.empty()) return InvalidArgumentError("pruning schedule has no layer:keep stage");
  return c;
}

PruningConfig PaperSchedule(int n_layers) {
  PruningConfig c;
  // floor(n/3), twice that, floor(15n/16): the paper's own layers for LLaMA-3.1 (32 layers:
  // 10, 20, 30) and Qwen2.5 (28 layers: 9, 18, 26).
  const int l1 = std::max(1, n_layers / 3);
  const int l2 = std::max(l1 + 1, 2 * l1);
  const int l3 = std::max(l2 + 1, 15 * n_layers / 16);
  c.stages.push_back({l1, 0.25, true});
  if (l2 < n_layers) c.stages.push_back({l2, 0.125, true});
  if (l3 < n_layers) c.stages.push_back({l3, 0.0625, true});
  return c;
}

PruningConfig DefaultScheduleFor(const std::string& model_name, int n_layers) {
  std::string lower = model_name;
  for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (lower.find("smollm2") != std::string::npos && n_layers == 30) {
    // SmolLM2-135M: every schedule pruning before layer 26 lost >= 5 points of long-context
    // accuracy (the paper's proportions: 56.9% -> 5.0%); keeping 1/8 at layer 28 stays within
    // one point (56.2%) with 95% first-token agreement.
    PruningConfig c;
    c.stages.push_back({28, 0.125, true});
    return c;
  }
  if (lower.find("qwen2.5") != std::string::npos && lower.find("coder") != std::string::npos &&
      (n_layers == 28 || n_layers == 24)) {
    // Qwen2.5-Coder-1.5B / 0.5B-Instruct on the H200 harness (1K-30K): the paper's score
    // (|mean q . mean k|) loses 80 / 56 points at the paper's schedule; attention-mass scores
    // keep these schedules within a point of dense (1.5B: 87.5 vs 87.5, 1.53x TTFT at 16K,
    // 1.67x at 30K; 0.5B: 71.5 vs 70.5, 1.63x / 1.71x).
    PruningConfig c;
    if (n_layers == 28) {
      c.stages = {{14, 6144, false}, {21, 3072, false}, {26, 2048, false}};
    } else {
      c.stages = {{12, 0.375, true}, {18, 0.1875, true}, {22, 0.125, true}};
    }
    c.attention_scores = true;
    return c;
  }
  return PaperSchedule(n_layers);
}

ResolvedSchedule ResolveSchedule(const PruningConfig& c, int64_t prompt_tokens) {
  ResolvedSchedule r;
  r.block_tokens = c.block_tokens;
  r.unit_tokens = c.unit_tokens;
  r.query_window = c.query_window;
  r.after_attention = c.after_attention;
  r.attention_scores = c.attention_scores;
  int64_t alive_blocks = (prompt_tokens + c.block_tokens - 1) / c.block_tokens;
  for (const PruneStage& s : c.stages) {
    const double tokens = s.fraction ? s.keep * static_cast<double>(prompt_tokens) : s.keep;
    int64_t blocks = static_cast<int64_t>(std::llround(tokens / c.block_tokens));
    blocks = std::max<int64_t>(blocks, 2);  // sink + last block at least
    if (blocks >= alive_blocks) {
      if (r.stages.empty() && !s.fraction) return r;  // prompt shorter than the first keep: dense
      continue;
    }
    r.stages.push_back({s.layer, blocks});
    alive_blocks = blocks;
  }
  return r;
}

std::vector<int64_t> TokensPerLayer(const ResolvedSchedule& s, int64_t prompt_tokens, int n_layers) {
  std::vector<int64_t> out(static_cast<size_t>(n_layers), prompt_tokens);
  const int64_t ragged = prompt_tokens % s.block_tokens;  // last block's size, 0 = full
  for (const ResolvedStage& st : s.stages) {
    const int64_t kept = ragged == 0 ? st.keep_blocks * s.block_tokens
                                     : (st.keep_blocks - 1) * s.block_tokens + ragged;
    const int first = s.after_attention ? st.layer + 1 : st.layer;
    for (int l = first; l < n_layers; ++l) out[static_cast<size_t>(l)] = kept;
  }
  return out;
}

}  // namespace slim
