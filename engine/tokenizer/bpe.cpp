// BpeModel: the GPT-2 byte mapping, interned symbols and merges, and the merge loop of one piece.
#include "engine/tokenizer/bpe.h"

#include <algorithm>
#include <cstdio>

#include "engine/tokenizer/spm.h"
#include "engine/tokenizer/utf8.h"

namespace slim {
namespace {

// GPT-2 byte <-> code point mapping (bytes_to_unicode): printable bytes map to themselves, the
// other 68 to U+0100.. in byte order.
struct ByteMap {
  std::array<uint16_t, 256> byte_to_cp{};
  std::array<int16_t, 324> cp_to_byte{};  // -1 where no byte maps to the code point
};

constexpr ByteMap MakeByteMap() {
  ByteMap m{};
  for (auto& b : m.cp_to_byte) b = -1;
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    const int cp = printable ? b : 256 + n++;
    m.byte_to_cp[b] = static_cast<uint16_t>(cp);
    m.cp_to_byte[cp] = static_cast<int16_t>(b);
  }
  return m;
}

constexpr ByteMap kByteMap = MakeByteMap();

// A symbol of a raw-text vocabulary that no merge names: it never merges, and is emitted as its
// own token or as byte tokens (BpeScratch::Symbol offset/length locate it in the piece).
constexpr int32_t kRawChar = -2;

uint64_t PairKey(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

// llama.cpp's llm_bigram_bpe::comparator (a max-heap on it pops lowest rank, then leftmost).
struct BigramOrder {
  bool operator()(const BpeScratch::Bigram& a, const BpeScratch::Bigram& b) const {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  }
};

}  // namespace

uint32_t ByteToCodePoint(uint8_t b) { return kByteMap.byte_to_cp[b]; }

std::string UnmapBytes(std::string_view s) {
  std::string out;
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  for (size_t i = 0; i < s.size();) {
    size_t len = 0;
    if (NextUtf8(p + i, s.size() - i, &len) != Utf8Result::kValid) {
      out.push_back(s[i]);
      i += 1;
      continue;
    }
    const uint32_t cp = DecodeValidUtf8(p + i, len);
    if (cp < kByteMap.cp_to_byte.size() && kByteMap.cp_to_byte[cp] >= 0) {
      out.push_back(static_cast<char>(kByteMap.cp_to_byte[cp]));
    } else {
      out.append(s.substr(i, len));
    }
    i += len;
  }
  return out;
}

int32_t BpeModel::Intern(const std::string& s) {
  auto [it, inserted] = sym_index_.emplace(s, static_cast<int32_t>(sym_text_.size()));
  if (inserted) {
    sym_text_.push_back(s);
    auto t = token_to_id_->find(s);
    sym_token_.push_back(t == token_to_id_->end() ? -1 : t->second);
  }
  return it->second;
}

int32_t BpeModel::FindSymbol(std::string_view s) const {
  auto it = sym_index_.find(std::string(s));
  return it == sym_index_.end() ? kRawChar : it->second;
}

BpeModel BpeModel::Build(const VocabData& vocab, const TokenIndex* token_to_id, const BpeOptions& opts) {
  BpeModel m;
  m.token_to_id_ = token_to_id;
  m.opts_ = opts;
  for (int b = 0; b < 256; ++b) {
    std::string key;
    if (opts.byte_encode) {
      std::string s;
      AppendUtf8(kByteMap.byte_to_cp[b], &s);
      m.byte_sym_[b] = m.Intern(s);
      key = std::string(1, static_cast<char>(b));
    } else {
      char hex[8];
      std::snprintf(hex, sizeof(hex), "<0x%02X>", b);
      key = hex;
    }
    auto it = token_to_id->find(key);
    m.fallback_token_[b] = it == token_to_id->end() ? -1 : it->second;
  }
  m.merges_.reserve(vocab.merges.size());
  for (size_t rank = 0; rank < vocab.merges.size(); ++rank) {
    const std::string& mg = vocab.merges[rank];
    const size_t sp = mg.find(' ', 1);  // as llama.cpp: the split is the first space after byte 0
    if (sp == std::string::npos) continue;  // llama.cpp keeps it as an unmatchable ("", "") pair
    const std::string left = mg.substr(0, sp);
    const std::string right = mg.substr(sp + 1);
    const int32_t l = m.Intern(left);
    const int32_t r = m.Intern(right);
    const int32_t result = m.Intern(left + right);
    m.merges_.emplace(PairKey(l, r), Merge{static_cast<int32_t>(rank), result});  // first rank wins
    const std::string& text = m.sym_text_[result];
    m.longest_merge_input_ = std::max(m.longest_merge_input_, opts.byte_encode ? UnmapBytes(text).size()
                                                                               : UnescapeSpmWhitespace(text).size());
  }
  for (const auto& [key, mg] : m.merges_) {
    if (m.sym_token_[mg.result] < 0) {
      m.merges_complete_ = false;
      break;
    }
  }
  for (int b = 0; b < 256; ++b) {
    m.vanishing_[b] = opts.byte_encode ? m.sym_token_[m.byte_sym_[b]] < 0 : m.fallback_token_[b] < 0;
  }
  return m;
}

// llama.cpp: a string missing from the vocabulary falls back to the tokens of its single bytes
// (their byte-mapped text, or <0xNN> for raw-text vocabularies); bytes without one are dropped.
void BpeModel::EmitBytes(std::string_view text, std::vector<int32_t>* out) const {
  for (const char c : text) {
    const int32_t t = fallback_token_[static_cast<unsigned char>(c)];
    if (t >= 0) out->push_back(t);
  }
}

void BpeModel::EmitSymbol(const BpeScratch::Symbol& s, std::string_view piece, std::vector<int32_t>* out) const {
  if (s.sym == kRawChar) {
    const std::string_view text = piece.substr(s.offset, s.length);
    auto it = token_to_id_->find(std::string(text));
    if (it != token_to_id_->end()) {
      out->push_back(it->second);
    } else {
      EmitBytes(text, out);
    }
    return;
  }
  if (sym_token_[s.sym] >= 0) {
    out->push_back(sym_token_[s.sym]);
    return;
  }
  EmitBytes(sym_text_[s.sym], out);
}

void BpeModel::EncodePiece(std::string_view piece, BpeScratch* scratch, std::vector<int32_t>* out) const {
  if (piece.empty()) return;
  auto& syms = scratch->syms;
  auto& heap = scratch->heap;
  if (opts_.ignore_merges || opts_.newline_pieces_whole) {
    const bool all_newlines = piece.find_first_not_of('\n') == std::string_view::npos;
    if (opts_.ignore_merges || all_newlines) {
      std::string& mapped = scratch->mapped;
      mapped.clear();
      if (opts_.byte_encode) {
        for (const char c : piece) mapped += sym_text_[byte_sym_[static_cast<unsigned char>(c)]];
      } else {
        mapped.assign(piece);
      }
      auto it = token_to_id_->find(mapped);
      if (it != token_to_id_->end()) {
        out->push_back(it->second);
        return;
      }
    }
  }

  syms.clear();
  heap.clear();
  for (size_t i = 0; i < piece.size();) {
    size_t len = 1;
    int32_t sym;
    if (opts_.byte_encode) {
      sym = byte_sym_[static_cast<unsigned char>(piece[i])];
    } else {
      const auto* p = reinterpret_cast<const unsigned char*>(piece.data());
      if (NextUtf8(p + i, piece.size() - i, &len) != Utf8Result::kValid) len = 1;
      sym = FindSymbol(piece.substr(i, len));
    }
    const int32_t idx = static_cast<int32_t>(syms.size());
    syms.push_back({sym, idx - 1, -1, static_cast<uint32_t>(i), static_cast<uint32_t>(len)});
    if (idx > 0) syms[idx - 1].next = idx;
    i += len;
  }
  if (syms.size() == 1) {
    EmitSymbol(syms[0], piece, out);
    return;
  }
  auto add_bigram = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    if (syms[left].sym < 0 || syms[right].sym < 0) return;
    auto it = merges_.find(PairKey(syms[left].sym, syms[right].sym));
    if (it == merges_.end()) return;
    heap.push_back({it->second.rank, left, right, syms[left].sym, syms[right].sym, it->second.result});
    std::push_heap(heap.begin(), heap.end(), BigramOrder{});
  };
  for (int32_t i = 1; i < static_cast<int32_t>(syms.size()); ++i) add_bigram(i - 1, i);

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), BigramOrder{});
    const BpeScratch::Bigram b = heap.back();
    heap.pop_back();
    BpeScratch::Symbol& l = syms[b.left];
    BpeScratch::Symbol& r = syms[b.right];
    // Stale entries: a side was merged away or has grown since the bigram was queued.
    if (l.sym != b.left_sym || r.sym != b.right_sym || l.next != b.right) continue;
    l.sym = b.result;
    l.length += r.length;
    r.sym = -1;
    l.next = r.next;
    if (r.next >= 0) syms[r.next].prev = b.left;
    add_bigram(l.prev, b.left);
    add_bigram(b.left, l.next);
  }
  for (int32_t i = 0; i != -1; i = syms[i].next) EmitSymbol(syms[i], piece, out);
}

}  // namespace slim
