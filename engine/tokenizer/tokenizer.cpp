// Byte-level BPE tokenizer reproducing llama.cpp (llama-vocab.cpp + unicode.cpp): special-token
// partition, GPT-2 byte mapping, merges by rank, and the UTF-8-safe StreamDecoder (the
// pre-tokenizer regexes are in pre_tokenizer.cpp, the UTF-8 helpers in utf8.cpp). Owns no chat
// formatting (chat_template.cpp) and no GGUF parsing.
#include "engine/tokenizer/tokenizer.h"

#include "engine/tokenizer/pre_tokenizer.h"
#include "engine/tokenizer/utf8.h"

#include <pcre2.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <initializer_list>
#include <memory>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace slim {
namespace {

// ---------------------------------------------------------------------------------------------
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

// Undoes the byte mapping of a vocabulary string. Code points outside the table (malformed
// vocabularies) are copied through as UTF-8, where llama.cpp would print an [UNK_BYTE_..] marker.
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

// ---------------------------------------------------------------------------------------------
// llama.cpp's lists of end-of-generation token texts (llama-vocab.cpp): such tokens count as
// control tokens even when the GGUF types them otherwise.
constexpr std::array<std::string_view, 12> kEogTexts = {
    "<|eot_id|>", "<|im_end|>",   "<|end|>",         "<end_of_turn>", "<|endoftext|>", "<|eom_id|>",
    "<EOT>",      "_<EOT>",       "<|end_of_text|>", "<end_of_utterance>", "<|return|>", "<|call|>"};

bool IsEogText(std::string_view s) {
  return std::find(kEogTexts.begin(), kEogTexts.end(), s) != kEogTexts.end();
}

// A piece of the input after the special-token partition: raw text or one special token.
struct Fragment {
  size_t offset = 0;
  size_t length = 0;
  int32_t token = -1;  // >= 0: a special token, no text
};

struct Merge {
  int32_t rank = 0;
  int32_t result = 0;  // interned symbol of left+right
};

uint64_t PairKey(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

// Per-piece BPE working state, reused across the pieces of one Encode call.
struct BpeSymbol {
  int32_t sym;  // interned symbol, -1 once merged into its left neighbour
  int32_t prev;
  int32_t next;
};
struct Bigram {
  int32_t rank;
  int32_t left;
  int32_t right;
  int32_t left_sym;
  int32_t right_sym;
  int32_t result;
};
// llama.cpp's llm_bigram_bpe::comparator (a max-heap on it pops lowest rank, then leftmost).
struct BigramOrder {
  bool operator()(const Bigram& a, const Bigram& b) const {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  }
};
struct BpeScratch {
  std::vector<BpeSymbol> syms;
  std::vector<Bigram> heap;
};

}  // namespace

// ---------------------------------------------------------------------------------------------

struct Tokenizer::Impl {
  VocabData vocab;
  std::vector<TokenType> types;  // effective types (EOG-looking tokens forced to control)
  std::unordered_map<std::string, int32_t> token_to_id;
  std::vector<std::string> pieces;     // decoded bytes of each token (text for special tokens)
  std::vector<int32_t> special_ids;    // control / user-defined / unknown, longest text first
  std::vector<bool> eog;

  // BPE state: every string that can appear as a symbol is interned once.
  std::vector<std::string> sym_text;  // byte-mapped text of each symbol
  std::vector<int32_t> sym_token;     // its token id, -1 when the vocabulary lacks it
  std::unordered_map<std::string, int32_t> sym_index;
  std::unordered_map<uint64_t, Merge> merges;  // (left sym, right sym) -> rank, result
  std::array<int32_t, 256> byte_sym{};         // symbol of each raw byte
  std::array<int32_t, 256> single_byte_token{};  // token whose text is that one byte, or -1

  std::vector<Pcre2Code> regexes;
  bool ignore_merges = false;
  size_t max_input_bytes_per_token = 0;  // see Tokenizer::max_input_bytes_per_token
  std::array<bool, 256> uncovered{};      // bytes whose symbol is no token: they may encode to nothing

  int32_t Intern(const std::string& s) {
    auto [it, inserted] = sym_index.emplace(s, static_cast<int32_t>(sym_text.size()));
    if (inserted) {
      sym_text.push_back(s);
      auto t = token_to_id.find(s);
      sym_token.push_back(t == token_to_id.end() ? -1 : t->second);
    }
    return it->second;
  }

  std::vector<Fragment> Partition(std::string_view text, const EncodeOptions& opts) const;
  Status PreTokenize(std::string_view text, pcre2_match_data* md,
                     std::vector<std::pair<size_t, size_t>>* pieces_out,
                     std::vector<std::pair<size_t, size_t>>* scratch) const;
  void EncodePiece(std::string_view piece, BpeScratch* scratch, std::vector<int32_t>* out) const;
  void EmitSymbol(int32_t sym, std::vector<int32_t>* out) const;
  // Create's tables: the detokenization pieces (llama.cpp's token_to_piece), the BPE symbols and
  // merges, and max_input_bytes_per_token / uncovered (after the two).
  void BuildPieces(const VocabData& vocab);
  void BuildBpe(const VocabData& vocab);
  void ComputeInputBound();
};

// llama.cpp's tokenizer_st_partition: for each special token, longest text first, split every
// raw fragment at each occurrence. Without parse_special, control and unknown tokens are not
// matched (user-defined ones still are); with special_ranges, they are matched inside those only.
std::vector<Fragment> Tokenizer::Impl::Partition(std::string_view text, const EncodeOptions& opts) const {
  const bool parse_special = opts.parse_special;
  auto allowed = [&](TokenType t, size_t begin, size_t end) {
    if (t != TokenType::kControl && t != TokenType::kUnknown) return true;
    if (opts.special_ranges.empty()) return true;
    for (const auto& [b, e] : opts.special_ranges)
      if (begin >= b && end <= e) return true;
    return false;
  };
  std::vector<Fragment> frags;
  if (text.empty()) return frags;
  frags.push_back({0, text.size(), -1});
  std::vector<Fragment> next;
  for (const int32_t id : special_ids) {
    const TokenType t = types[id];
    if (!parse_special && (t == TokenType::kControl || t == TokenType::kUnknown)) continue;
    const std::string& st = vocab.tokens[id];
    if (text.find(st) == std::string_view::npos) continue;
    next.clear();
    for (const Fragment& f : frags) {
      if (f.token >= 0) {
        next.push_back(f);
        continue;
      }
      const size_t end = f.offset + f.length;
      const std::string_view window = text.substr(0, end);
      size_t pos = f.offset;
      size_t m;
      size_t from = pos;  // search start; [pos, m) stays raw text
      while ((m = window.find(st, from)) != std::string_view::npos) {
        if (!allowed(t, m, m + st.size())) {
          from = m + 1;
          continue;
        }
        if (m > pos) next.push_back({pos, m - pos, -1});
        next.push_back({0, 0, id});
        pos = m + st.size();
        from = pos;
      }
      if (pos < end) next.push_back({pos, end - pos, -1});
    }
    frags.swap(next);
  }
  return frags;
}

// llama.cpp's unicode_regex_split: each regex splits the pieces produced by the previous one;
// matches and the unmatched text between them both become pieces. Lookarounds see only the
// current piece. Pieces are (offset, length) in bytes of `text`.
Status Tokenizer::Impl::PreTokenize(std::string_view text, pcre2_match_data* md,
                                    std::vector<std::pair<size_t, size_t>>* pieces_out,
                                    std::vector<std::pair<size_t, size_t>>* scratch) const {
  auto& cur = *pieces_out;
  auto& nxt = *scratch;
  cur.clear();
  cur.emplace_back(0, text.size());
  for (const Pcre2Code& re : regexes) {
    nxt.clear();
    for (const auto& [off, len] : cur) {
      const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data() + off);
      size_t pos = 0;       // search start
      size_t emitted = 0;   // end of the last piece emitted
      while (pos < len) {
        const int rc = pcre2_match(re.get(), subject, len, pos, PCRE2_NO_UTF_CHECK, md, nullptr);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) return InternalError("pre-tokenizer regex failed: " + Pcre2ErrorText(rc));
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
        const size_t ms = ov[0], me = ov[1];
        if (me == ms) {  // empty match (none of our regexes has one): step one code point
          size_t step = 1;
          while (ms + step < len && (static_cast<unsigned char>(text[off + ms + step]) & 0xC0) == 0x80) ++step;
          pos = ms + step;
          continue;
        }
        if (ms > emitted) nxt.emplace_back(off + emitted, ms - emitted);
        nxt.emplace_back(off + ms, me - ms);
        emitted = pos = me;
      }
      if (emitted < len) nxt.emplace_back(off + emitted, len - emitted);
    }
    cur.swap(nxt);
  }
  return OkStatus();
}

// Emits the token of a final symbol. llama.cpp: a merged string missing from the vocabulary
// falls back to the tokens of its single bytes; bytes without such a token are dropped.
void Tokenizer::Impl::EmitSymbol(int32_t sym, std::vector<int32_t>* out) const {
  if (sym_token[sym] >= 0) {
    out->push_back(sym_token[sym]);
    return;
  }
  for (const char c : sym_text[sym]) {
    const int32_t t = single_byte_token[static_cast<unsigned char>(c)];
    if (t >= 0) out->push_back(t);
  }
}

// llm_tokenizer_bpe_session::tokenize for one pre-tokenized piece (raw bytes): start from one
// symbol per byte, repeatedly apply the lowest-ranked (then leftmost) adjacent merge.
void Tokenizer::Impl::EncodePiece(std::string_view piece, BpeScratch* scratch, std::vector<int32_t>* out) const {
  const int32_t n = static_cast<int32_t>(piece.size());
  if (n == 0) return;
  if (n == 1) {
    EmitSymbol(byte_sym[static_cast<unsigned char>(piece[0])], out);
    return;
  }
  if (ignore_merges) {
    std::string mapped;
    for (const char c : piece) mapped += sym_text[byte_sym[static_cast<unsigned char>(c)]];
    auto it = token_to_id.find(mapped);
    if (it != token_to_id.end()) {
      out->push_back(it->second);
      return;
    }
  }

  auto& syms = scratch->syms;
  auto& heap = scratch->heap;
  syms.resize(n);
  heap.clear();
  for (int32_t i = 0; i < n; ++i) {
    syms[i] = {byte_sym[static_cast<unsigned char>(piece[i])], i - 1, i + 1 < n ? i + 1 : -1};
  }
  auto add_bigram = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    auto it = merges.find(PairKey(syms[left].sym, syms[right].sym));
    if (it == merges.end()) return;
    heap.push_back({it->second.rank, left, right, syms[left].sym, syms[right].sym, it->second.result});
    std::push_heap(heap.begin(), heap.end(), BigramOrder{});
  };
  for (int32_t i = 1; i < n; ++i) add_bigram(i - 1, i);

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), BigramOrder{});
    const Bigram b = heap.back();
    heap.pop_back();
    BpeSymbol& l = syms[b.left];
    BpeSymbol& r = syms[b.right];
    // Stale entries: a side was merged away or has grown since the bigram was queued.
    if (l.sym != b.left_sym || r.sym != b.right_sym) continue;
    l.sym = b.result;
    r.sym = -1;
    l.next = r.next;
    if (r.next >= 0) syms[r.next].prev = b.left;
    add_bigram(l.prev, b.left);
    add_bigram(b.left, l.next);
  }
  for (int32_t i = 0; i != -1; i = syms[i].next) EmitSymbol(syms[i].sym, out);
}

// ---------------------------------------------------------------------------------------------

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

void Tokenizer::Impl::BuildPieces(const VocabData& vocab) {
  const size_t n = vocab.tokens.size();
  pieces.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const std::string& t = vocab.tokens[i];
    switch (types[i]) {
      case TokenType::kNormal:
        pieces[i] = UnmapBytes(t);
        break;
      case TokenType::kControl:
      case TokenType::kUnknown:
      case TokenType::kUserDefined:
        pieces[i] = t;
        break;
      case TokenType::kByte: {
        unsigned v = 0;
        if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' &&
            std::sscanf(t.c_str() + 3, "%2x", &v) == 1) {
          pieces[i] = std::string(1, static_cast<char>(v));
        } else {
          pieces[i] = UnmapBytes(t);
        }
        break;
      }
      case TokenType::kUnused:
      case TokenType::kUndefined:
        break;  // llama.cpp renders these as nothing
    }
  }
}

void Tokenizer::Impl::BuildBpe(const VocabData& vocab) {
  for (int b = 0; b < 256; ++b) {
    std::string s;
    AppendUtf8(kByteMap.byte_to_cp[b], &s);
    byte_sym[b] = Intern(s);
    auto it = token_to_id.find(std::string(1, static_cast<char>(b)));
    single_byte_token[b] = it == token_to_id.end() ? -1 : it->second;
  }
  merges.reserve(vocab.merges.size());
  for (size_t rank = 0; rank < vocab.merges.size(); ++rank) {
    const std::string& m = vocab.merges[rank];
    const size_t sp = m.find(' ', 1);  // as llama.cpp: the split is the first space after byte 0
    if (sp == std::string::npos) continue;  // llama.cpp keeps it as an unmatchable ("", "") pair
    const std::string left = m.substr(0, sp);
    const std::string right = m.substr(sp + 1);
    const int32_t l = Intern(left);
    const int32_t r = Intern(right);
    const int32_t result = Intern(left + right);
    merges.emplace(PairKey(l, r), Merge{static_cast<int32_t>(rank), result});  // first rank wins
  }
}

void Tokenizer::Impl::ComputeInputBound() {
  // When every merge result is a token, each emitted token stands for exactly the input bytes its
  // piece holds (special tokens: their text), so no token covers more input than the longest
  // piece; only bytes whose own symbol is no token (control characters some vocabularies lack)
  // may be dropped. A merge result that is no token falls back to single bytes, which can drop
  // anything: then no bound holds.
  bool complete = true;
  for (const auto& [key, m] : merges) {
    if (!complete) break;
    complete = sym_token[m.result] >= 0;
  }
  for (int b = 0; b < 256; ++b) uncovered[b] = sym_token[byte_sym[b]] < 0;
  if (complete) {
    size_t longest = 1;
    for (const std::string& p : pieces) longest = std::max(longest, p.size());
    max_input_bytes_per_token = longest;
  }
}

StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Create(VocabData vocab) {
  if (vocab.model != "gpt2") {
    return UnimplementedError("tokenizer model '" + vocab.model +
                              "' is not supported (only byte-level BPE, tokenizer.ggml.model = gpt2)");
  }
  const size_t n = vocab.tokens.size();
  if (n == 0) return InvalidArgumentError("vocabulary has no tokens");
  if (n > static_cast<size_t>(INT32_MAX)) return InvalidArgumentError("vocabulary is too large");
  if (vocab.token_types.empty()) vocab.token_types.assign(n, TokenType::kNormal);
  if (vocab.token_types.size() != n) {
    return InvalidArgumentError("vocabulary has " + std::to_string(n) + " tokens but " +
                                std::to_string(vocab.token_types.size()) + " token types");
  }
  const std::pair<const char*, int32_t> ids[] = {{"bos", vocab.bos_id}, {"eos", vocab.eos_id},
                                                 {"unk", vocab.unk_id}, {"pad", vocab.pad_id},
                                                 {"eot", vocab.eot_id}};
  for (const auto& [name, id] : ids) {
    if (id < -1 || id >= static_cast<int64_t>(n)) {
      return InvalidArgumentError(std::string(name) + " token id " + std::to_string(id) +
                                  " is out of range (vocabulary has " + std::to_string(n) + " tokens)");
    }
  }
  if (vocab.add_bos && vocab.bos_id < 0) return InvalidArgumentError("add_bos is set but there is no bos token");

  auto impl = std::make_unique<Impl>();
  SLIM_ASSIGN_OR_RETURN(PreTokenizerSpec spec, PreTokenizerFor(vocab.pre));
  impl->ignore_merges = spec.ignore_merges;
  for (const std::string& re : spec.regexes) {
    SLIM_ASSIGN_OR_RETURN(Pcre2Code code, CompileRegex(re));
    impl->regexes.push_back(std::move(code));
  }

  impl->types = vocab.token_types;
  impl->token_to_id.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const std::string& t = vocab.tokens[i];
    if (t.empty()) continue;  // never produced by BPE, never matched as special text
    auto [it, inserted] = impl->token_to_id.emplace(t, static_cast<int32_t>(i));
    if (!inserted) {
      return InvalidArgumentError("duplicate token in vocabulary: '" + t + "' has ids " +
                                  std::to_string(it->second) + " and " + std::to_string(i));
    }
    if (IsEogText(t) && impl->types[i] != TokenType::kControl) impl->types[i] = TokenType::kControl;
  }

  impl->eog.assign(n, false);
  for (size_t i = 0; i < n; ++i) {
    if (impl->types[i] == TokenType::kControl && IsEogText(vocab.tokens[i])) impl->eog[i] = true;
  }
  if (vocab.eos_id >= 0) impl->eog[vocab.eos_id] = true;
  if (vocab.eot_id >= 0) impl->eog[vocab.eot_id] = true;

  for (size_t i = 0; i < n; ++i) {
    const TokenType t = impl->types[i];
    if ((t == TokenType::kControl || t == TokenType::kUserDefined || t == TokenType::kUnknown) &&
        !vocab.tokens[i].empty()) {
      impl->special_ids.push_back(static_cast<int32_t>(i));
    }
  }
  std::stable_sort(impl->special_ids.begin(), impl->special_ids.end(), [&](int32_t a, int32_t b) {
    return vocab.tokens[a].size() > vocab.tokens[b].size();
  });

  impl->BuildPieces(vocab);
  impl->BuildBpe(vocab);
  impl->ComputeInputBound();

  impl->vocab = std::move(vocab);
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(impl)));
}

StatusOr<std::vector<int32_t>> Tokenizer::Encode(std::string_view text, const EncodeOptions& opts) const {
  SLIM_RETURN_IF_ERROR(CheckUtf8(text));
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (opts.add_bos && impl_->vocab.bos_id >= 0) out.push_back(impl_->vocab.bos_id);

  Pcre2MatchData md(pcre2_match_data_create(1, nullptr));
  if (md == nullptr) return ResourceExhaustedError("out of memory for regex match data");
  std::vector<std::pair<size_t, size_t>> pieces, scratch;
  BpeScratch bpe;
  for (const Fragment& f : impl_->Partition(text, opts)) {
    if (f.token >= 0) {
      out.push_back(f.token);
      continue;
    }
    const std::string_view frag = text.substr(f.offset, f.length);
    SLIM_RETURN_IF_ERROR(impl_->PreTokenize(frag, md.get(), &pieces, &scratch));
    for (const auto& [off, len] : pieces) impl_->EncodePiece(frag.substr(off, len), &bpe, &out);
  }
  return out;
}

StatusOr<std::vector<std::string>> Tokenizer::PreTokenize(std::string_view text) const {
  SLIM_RETURN_IF_ERROR(CheckUtf8(text));
  Pcre2MatchData md(pcre2_match_data_create(1, nullptr));
  if (md == nullptr) return ResourceExhaustedError("out of memory for regex match data");
  std::vector<std::pair<size_t, size_t>> pieces, scratch;
  SLIM_RETURN_IF_ERROR(impl_->PreTokenize(text, md.get(), &pieces, &scratch));
  std::vector<std::string> out;
  out.reserve(pieces.size());
  for (const auto& [off, len] : pieces) out.emplace_back(text.substr(off, len));
  return out;
}

std::string Tokenizer::TokenBytes(int32_t id, bool render_special) const {
  if (id < 0 || static_cast<size_t>(id) >= impl_->pieces.size()) return {};
  const TokenType t = impl_->types[id];
  if (!render_special && (t == TokenType::kControl || t == TokenType::kUnknown)) return {};
  return impl_->pieces[id];
}

std::string Tokenizer::Decode(std::span<const int32_t> ids, bool render_special) const {
  std::string out;
  for (const int32_t id : ids) out += TokenBytes(id, render_special);
  return out;
}

size_t Tokenizer::max_input_bytes_per_token() const { return impl_->max_input_bytes_per_token; }

size_t Tokenizer::CoveredBytes(std::string_view text) const {
  size_t n = 0;
  for (const char c : text) n += impl_->uncovered[static_cast<unsigned char>(c)] ? 0 : 1;
  return n;
}
int32_t Tokenizer::vocab_size() const { return static_cast<int32_t>(impl_->vocab.tokens.size()); }
int32_t Tokenizer::bos_id() const { return impl_->vocab.bos_id; }
int32_t Tokenizer::eos_id() const { return impl_->vocab.eos_id; }

bool Tokenizer::IsEndOfGeneration(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < impl_->eog.size() && impl_->eog[id];
}

bool Tokenizer::IsControl(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < impl_->types.size() && impl_->types[id] == TokenType::kControl;
}

int32_t Tokenizer::FindToken(std::string_view text) const {
  auto it = impl_->token_to_id.find(std::string(text));
  return it == impl_->token_to_id.end() ? -1 : it->second;
}

const VocabData& Tokenizer::vocab() const { return impl_->vocab; }

// ---------------------------------------------------------------------------------------------

StreamDecoder::StreamDecoder(const Tokenizer& tok, bool render_special)
    : tok_(tok), render_special_(render_special) {}

std::string StreamDecoder::Push(int32_t id) {
  pending_ += tok_.TokenBytes(id, render_special_);
  return TakeUtf8(&pending_, /*flush=*/false);
}

std::string StreamDecoder::Flush() { return TakeUtf8(&pending_, /*flush=*/true); }

}  // namespace slim
