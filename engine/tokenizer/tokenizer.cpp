// The tokenizer reproducing llama.cpp (llama-vocab.cpp + unicode.cpp): model selection, the
// special-token partition, the pre-tokenizer split, detokenization pieces and the UTF-8-safe
// StreamDecoder. The merge algorithms are in bpe.cpp (byte-level BPE) and spm.cpp
// (SentencePiece), the pre-tokenizer regexes in pre_tokenizer.cpp, the UTF-8 helpers in
// utf8.cpp. Owns no chat formatting (chat_template.cpp) and no file parsing.
#include "engine/tokenizer/tokenizer.h"

#include <pcre2.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <memory>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "engine/tokenizer/bpe.h"
#include "engine/tokenizer/normalize.h"
#include "engine/tokenizer/pre_tokenizer.h"
#include "engine/tokenizer/spm.h"
#include "engine/tokenizer/utf8.h"

namespace slim {
namespace {

// llama.cpp's lists of end-of-generation token texts (llama-vocab.cpp): such tokens count as
// control tokens even when the vocabulary types them otherwise.
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

enum class ModelKind { kBpe, kSpm };

// What each tokenizer.ggml.model value is; Unimplemented for the ones llama.cpp knows and we do
// not implement (naming them), and for unknown names.
StatusOr<ModelKind> KindOf(const std::string& model, bool hf_rules) {
  if (model == "gpt2" || model == "gemma4" || (hf_rules && model == "hf-bpe")) return ModelKind::kBpe;
  if (model == "llama") return ModelKind::kSpm;
  std::string what;
  if (model == "bert") what = " (WordPiece, llama.cpp's WPM)";
  else if (model == "t5") what = " (Unigram, llama.cpp's UGM)";
  else if (model == "rwkv") what = " (RWKV's trie tokenizer)";
  else if (model == "plamo2") what = " (PLaMo-2's Aho-Corasick tokenizer)";
  else if (model == "none" || model == "no_vocab") what = " (a model without a vocabulary)";
  return UnimplementedError("tokenizer model '" + model + "'" + what +
                            " is not supported; supported: gpt2 (byte-level BPE), llama (SentencePiece), "
                            "gemma4 (BPE over raw UTF-8)");
}

}  // namespace

struct Tokenizer::Impl {
  VocabData vocab;
  ModelKind kind = ModelKind::kBpe;
  std::vector<TokenType> types;  // effective types (EOG-looking tokens forced to control)
  TokenIndex token_to_id;
  std::vector<std::string> pieces;     // decoded bytes of each token (text for special tokens)
  std::vector<int32_t> special_ids;    // control / user-defined / unknown, longest text first
  std::vector<bool> eog;
  std::vector<bool> rstrip;            // whitespace after this special token is dropped

  std::optional<BpeModel> bpe;
  std::optional<SpmModel> spm;
  std::vector<Pcre2Code> regexes;      // BPE pre-tokenizer
  bool escape_whitespace = false;      // BPE over SentencePiece-style text: ' ' -> U+2581 first
  size_t max_input_bytes_per_token = 0;  // see Tokenizer::max_input_bytes_per_token
  std::array<bool, 256> uncovered{};      // bytes that may encode to nothing

  std::vector<Fragment> Partition(std::string_view text, const EncodeOptions& opts) const;
  Status PreTokenize(std::string_view text, pcre2_match_data* md,
                     std::vector<std::pair<size_t, size_t>>* pieces_out,
                     std::vector<std::pair<size_t, size_t>>* scratch) const;
  // Create's tables: the detokenization pieces (llama.cpp's token_to_piece), then
  // max_input_bytes_per_token / uncovered (after the model is built).
  void BuildPieces(const VocabData& vocab);
  void ComputeInputBound(const VocabData& vocab);
  Status BuildModel(const VocabData& vocab);
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
        if (rstrip[id]) {
          while (pos < end && std::isspace(static_cast<unsigned char>(text[pos]))) ++pos;
        }
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
// current piece. An empty match splits the piece there (as std::regex_iterator's empty matches
// do in llama.cpp); the search then retries a non-empty match at the same place before moving on
// by one code point. Pieces are (offset, length) in bytes of `text`.
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
      uint32_t flags = 0;   // after an empty match: PCRE2_NOTEMPTY_ATSTART | PCRE2_ANCHORED
      while (pos <= len) {
        const int rc = pcre2_match(re.get(), subject, len, pos, PCRE2_NO_UTF_CHECK | flags, md, nullptr);
        if (rc == PCRE2_ERROR_NOMATCH) {
          if (flags == 0 || pos >= len) break;
          // No non-empty match at the empty match's place: move on by one code point.
          flags = 0;
          ++pos;
          while (pos < len && (static_cast<unsigned char>(text[off + pos]) & 0xC0) == 0x80) ++pos;
          continue;
        }
        if (rc < 0) return InternalError("pre-tokenizer regex failed: " + Pcre2ErrorText(rc));
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
        const size_t ms = ov[0], me = ov[1];
        if (ms > emitted) nxt.emplace_back(off + emitted, ms - emitted);
        if (me > ms) nxt.emplace_back(off + ms, me - ms);
        emitted = pos = me;
        flags = me == ms ? (PCRE2_NOTEMPTY_ATSTART | PCRE2_ANCHORED) : 0;
        if (me == ms && pos >= len) break;
      }
      if (emitted < len) nxt.emplace_back(off + emitted, len - emitted);
    }
    cur.swap(nxt);
  }
  return OkStatus();
}

// ---------------------------------------------------------------------------------------------

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

void Tokenizer::Impl::BuildPieces(const VocabData& vocab) {
  const size_t n = vocab.tokens.size();
  pieces.resize(n);
  const bool unescape = kind == ModelKind::kSpm || escape_whitespace;
  for (size_t i = 0; i < n; ++i) {
    const std::string& t = vocab.tokens[i];
    switch (types[i]) {
      case TokenType::kNormal:
        pieces[i] = unescape ? UnescapeSpmWhitespace(t) : UnmapBytes(t);
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
          pieces[i] = unescape ? t : UnmapBytes(t);
        }
        break;
      }
      case TokenType::kUnused:
      case TokenType::kUndefined:
        break;  // llama.cpp renders these as nothing
    }
  }
}

void Tokenizer::Impl::ComputeInputBound(const VocabData& vocab) {
  // Each emitted token stands for at most the input bytes of its text (byte-mapped or escaped
  // text counted as the input it stands for; special tokens: their text). BPE: a merge result
  // that is no token falls back to single bytes, which can drop anything: then no bound holds.
  // SentencePiece: a character that is no token becomes one token per byte (or nothing where
  // the vocabulary has neither a byte token nor an unknown token).
  const bool complete = kind == ModelKind::kSpm || bpe->merges_complete();
  for (int b = 0; b < 256; ++b) {
    uncovered[b] = kind == ModelKind::kSpm ? spm->ByteToken(static_cast<uint8_t>(b)) < 0
                                           : bpe->ByteMayVanish(static_cast<uint8_t>(b));
  }
  if (!complete) return;
  size_t longest = 1;
  for (const std::string& p : pieces) longest = std::max(longest, p.size());
  if (kind == ModelKind::kSpm) {
    // Any token text can be formed by merging (whatever its type): count every one.
    for (const std::string& t : vocab.tokens) longest = std::max(longest, UnescapeSpmWhitespace(t).size());
  } else {
    longest = std::max(longest, bpe->longest_merge_input());
  }
  // NFC may compose several input characters into one (Hangul L+V+T: 9 bytes into 3): the
  // bound then holds for the input only with a margin of 4.
  max_input_bytes_per_token = vocab.nfc ? 4 * longest : longest;
}

Status Tokenizer::Impl::BuildModel(const VocabData& v) {
  if (kind == ModelKind::kSpm) {
    if (!v.scores.empty() && v.scores.size() != v.tokens.size()) {
      return InvalidArgumentError("vocabulary has " + std::to_string(v.tokens.size()) + " tokens but " +
                                  std::to_string(v.scores.size()) + " scores");
    }
    spm = SpmModel::Build(v, &token_to_id);
    return OkStatus();
  }
  PreTokenizerSpec spec;
  if (v.hf_rules) {
    spec.regexes = v.split_regexes;
    spec.ignore_merges = v.ignore_merges;
    spec.byte_encode = v.byte_level;
    spec.escape_whitespace = v.escape_whitespace;
  } else {
    // llama.cpp names Gemma 4's pre-tokenizer after the model whatever tokenizer.ggml.pre says.
    SLIM_ASSIGN_OR_RETURN(spec, PreTokenizerFor(v.model == "gemma4" ? "gemma4" : v.pre));
  }
  for (const std::string& re : spec.regexes) {
    SLIM_ASSIGN_OR_RETURN(Pcre2Code code, CompileRegex(re));
    regexes.push_back(std::move(code));
  }
  escape_whitespace = spec.escape_whitespace;
  BpeOptions bo;
  bo.byte_encode = spec.byte_encode;
  bo.ignore_merges = spec.ignore_merges;
  bo.newline_pieces_whole = spec.newline_pieces_whole;
  bpe = BpeModel::Build(v, &token_to_id, bo);
  return OkStatus();
}

StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Create(VocabData vocab) {
  SLIM_ASSIGN_OR_RETURN(const ModelKind kind, KindOf(vocab.model, vocab.hf_rules));
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
  for (const int32_t id : vocab.rstrip_ids) {
    if (id < 0 || static_cast<size_t>(id) >= n) {
      return InvalidArgumentError("rstrip token id " + std::to_string(id) + " is out of range");
    }
  }

  auto impl = std::make_unique<Impl>();
  impl->kind = kind;
  impl->types = vocab.token_types;
  impl->token_to_id.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const std::string& t = vocab.tokens[i];
    if (t.empty()) continue;  // never produced by merging, never matched as special text
    auto [it, inserted] = impl->token_to_id.emplace(t, static_cast<int32_t>(i));
    if (!inserted) {
      return InvalidArgumentError("duplicate token in vocabulary: '" + t + "' has ids " +
                                  std::to_string(it->second) + " and " + std::to_string(i));
    }
    if (IsEogText(t) && impl->types[i] != TokenType::kControl) impl->types[i] = TokenType::kControl;
  }
  SLIM_RETURN_IF_ERROR(impl->BuildModel(vocab));

  impl->eog.assign(n, false);
  for (size_t i = 0; i < n; ++i) {
    if (impl->types[i] == TokenType::kControl && IsEogText(vocab.tokens[i])) impl->eog[i] = true;
  }
  if (vocab.eos_id >= 0) impl->eog[vocab.eos_id] = true;
  if (vocab.eot_id >= 0) impl->eog[vocab.eot_id] = true;
  impl->rstrip.assign(n, false);
  for (const int32_t id : vocab.rstrip_ids) impl->rstrip[id] = true;

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
  impl->ComputeInputBound(vocab);
  impl->vocab = std::move(vocab);
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(impl)));
}

StatusOr<std::vector<int32_t>> Tokenizer::Encode(std::string_view text, const EncodeOptions& opts) const {
  SLIM_RETURN_IF_ERROR(CheckUtf8(text));
  const Impl& im = *impl_;
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (opts.add_bos && im.vocab.bos_id >= 0) out.push_back(im.vocab.bos_id);
  const std::vector<Fragment> frags = im.Partition(text, opts);

  if (im.kind == ModelKind::kSpm) {
    // llama.cpp: a space is prepended to the text at the start and after each special token.
    SpmScratch scratch;
    std::string buf;
    bool prev_special = true;
    for (const Fragment& f : frags) {
      if (f.token >= 0) {
        out.push_back(f.token);
        prev_special = true;
        continue;
      }
      buf.clear();
      if (im.vocab.add_space_prefix && prev_special) buf.push_back(' ');
      buf.append(text.substr(f.offset, f.length));
      im.spm->Encode(buf, &scratch, &out);
      prev_special = false;
    }
    return out;
  }

  Pcre2MatchData md(pcre2_match_data_create(1, nullptr));
  if (md == nullptr) return ResourceExhaustedError("out of memory for regex match data");
  std::vector<std::pair<size_t, size_t>> pieces, scratch;
  BpeScratch bpe;
  std::string escaped, normalized;
  for (const Fragment& f : frags) {
    if (f.token >= 0) {
      out.push_back(f.token);
      continue;
    }
    std::string_view frag = text.substr(f.offset, f.length);
    if (im.vocab.nfc) {
      SLIM_ASSIGN_OR_RETURN(normalized, NfcNormalize(frag));
      frag = normalized;
    }
    if (im.escape_whitespace) {
      escaped.clear();
      using Prefix = VocabData::SpacePrefix;
      const Prefix prefix = im.vocab.space_prefix;
      const bool starts_escaped = frag.starts_with(' ') || frag.starts_with("\xE2\x96\x81");
      if (prefix == Prefix::kAlways || (prefix == Prefix::kMetaspaceAlways && !starts_escaped) ||
          (prefix == Prefix::kMetaspaceFirst && !starts_escaped && f.offset == 0)) {
        escaped.append("\xE2\x96\x81");
      }
      EscapeSpmWhitespace(frag, &escaped);
      frag = escaped;
    }
    SLIM_RETURN_IF_ERROR(im.PreTokenize(frag, md.get(), &pieces, &scratch));
    for (const auto& [off, len] : pieces) im.bpe->EncodePiece(frag.substr(off, len), &bpe, &out);
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
