// SpmModel: llama.cpp's llm_tokenizer_spm_session over a vocabulary's scores.
#include "engine/tokenizer/spm.h"

#include <algorithm>
#include <cstdio>

#include "engine/tokenizer/utf8.h"

namespace slim {
namespace {

constexpr std::string_view kEscapedSpace = "\xE2\x96\x81";  // U+2581 LOWER ONE EIGHTH BLOCK

// llama.cpp's llm_bigram_spm::comparator (a max-heap on it pops highest score, then leftmost).
struct BigramOrder {
  bool operator()(const SpmScratch::Bigram& a, const SpmScratch::Bigram& b) const {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  }
};

}  // namespace

void EscapeSpmWhitespace(std::string_view text, std::string* out) {
  for (const char c : text) {
    if (c == ' ') {
      out->append(kEscapedSpace);
    } else {
      out->push_back(c);
    }
  }
}

std::string UnescapeSpmWhitespace(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    if (text.compare(i, kEscapedSpace.size(), kEscapedSpace) == 0) {
      out.push_back(' ');
      i += kEscapedSpace.size();
    } else {
      out.push_back(text[i++]);
    }
  }
  return out;
}

SpmModel SpmModel::Build(const VocabData& vocab, const TokenIndex* token_to_id) {
  SpmModel m;
  m.token_to_id_ = token_to_id;
  m.scores_ = vocab.scores;
  m.scores_.resize(vocab.tokens.size(), 0.0f);
  for (int b = 0; b < 256; ++b) {
    char hex[8];
    std::snprintf(hex, sizeof(hex), "<0x%02X>", b);
    auto it = token_to_id->find(hex);
    if (it == token_to_id->end()) it = token_to_id->find(std::string(1, static_cast<char>(b)));
    m.byte_token_[b] = it != token_to_id->end() ? it->second : vocab.unk_id;
  }
  return m;
}

int32_t SpmModel::Lookup(std::string_view text, SpmScratch* s) const {
  s->key.assign(text);
  auto it = token_to_id_->find(s->key);
  return it == token_to_id_->end() ? -1 : it->second;
}

void SpmModel::TryAddBigram(int32_t left, int32_t right, SpmScratch* s) const {
  if (left < 0 || right < 0) return;
  const SpmScratch::Symbol& l = s->syms[left];
  const SpmScratch::Symbol& r = s->syms[right];
  const uint32_t length = l.length + r.length;
  const int32_t token = Lookup(std::string_view(s->escaped).substr(l.offset, length), s);
  if (token < 0) return;
  s->heap.push_back({scores_[token], left, right, length});
  std::push_heap(s->heap.begin(), s->heap.end(), BigramOrder{});
}

void SpmModel::Encode(std::string_view text, SpmScratch* s, std::vector<int32_t>* out) const {
  s->escaped.clear();
  EscapeSpmWhitespace(text, &s->escaped);
  const std::string_view esc = s->escaped;
  if (esc.empty()) return;
  auto& syms = s->syms;
  auto& heap = s->heap;
  syms.clear();
  heap.clear();
  const auto* p = reinterpret_cast<const unsigned char*>(esc.data());
  for (size_t i = 0; i < esc.size();) {
    size_t len = 1;
    if (NextUtf8(p + i, esc.size() - i, &len) != Utf8Result::kValid) len = 1;
    const int32_t idx = static_cast<int32_t>(syms.size());
    syms.push_back({idx - 1, -1, static_cast<uint32_t>(i), static_cast<uint32_t>(len)});
    if (idx > 0) syms[idx - 1].next = idx;
    i += len;
  }
  for (int32_t i = 1; i < static_cast<int32_t>(syms.size()); ++i) TryAddBigram(i - 1, i, s);

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), BigramOrder{});
    const SpmScratch::Bigram b = heap.back();
    heap.pop_back();
    SpmScratch::Symbol& l = syms[b.left];
    SpmScratch::Symbol& r = syms[b.right];
    // Stale entries: a side was merged away or has grown since the bigram was queued.
    if (l.length == 0 || r.length == 0 || l.length + r.length != b.length) continue;
    l.length += r.length;
    r.length = 0;
    l.next = r.next;
    if (r.next >= 0) syms[r.next].prev = b.left;
    TryAddBigram(l.prev, b.left, s);
    TryAddBigram(b.left, l.next, s);
  }

  // Every merged symbol is a token by construction; a single character that is not one becomes
  // its bytes' tokens.
  for (int32_t i = 0; i != -1; i = syms[i].next) {
    const std::string_view sym = esc.substr(syms[i].offset, syms[i].length);
    const int32_t token = Lookup(sym, s);
    if (token >= 0) {
      out->push_back(token);
      continue;
    }
    for (const char c : sym) {
      const int32_t t = byte_token_[static_cast<unsigned char>(c)];
      if (t >= 0) out->push_back(t);
    }
  }
}

}  // namespace slim
