// VocabFromHfDir: tokenizer.json's model, added tokens, normalizer, pre-tokenizer, decoder and
// post-processor, then tokenizer_config.json's special tokens, BOS/EOS flags and chat template.
#include "engine/tokenizer/hf_tokenizer.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace slim {
namespace {

using Json = nlohmann::json;

constexpr const char* kEscapedSpace = "\xE2\x96\x81";  // U+2581
// tokenizers' ByteLevel pre-tokenizer regex (use_regex = true): GPT-2's.
constexpr const char* kByteLevelRegex =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

// One JSON file being read: errors name it and the JSON path.
struct Doc {
  std::string path;
  Json root;

  Status Bad(const std::string& where, const std::string& what) const {
    return InvalidArgumentError(path + ": " + where + ": " + what);
  }
  Status Unsupported(const std::string& where, const std::string& what) const {
    return UnimplementedError(path + ": " + where + ": " + what);
  }
};

StatusOr<Doc> ReadJson(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFoundError(path + ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  Doc d{path, Json::parse(ss.str(), nullptr, /*allow_exceptions=*/false)};
  if (d.root.is_discarded()) return InvalidArgumentError(path + ": not valid JSON");
  if (!d.root.is_object()) return InvalidArgumentError(path + ": the top level is not an object");
  return d;
}

std::string TypeOf(const Json& j) {
  return j.is_object() && j.contains("type") && j["type"].is_string() ? j["type"].get<std::string>() : "";
}

// String member, "" when absent or null; an error when of another type.
StatusOr<std::string> Str(const Doc& d, const Json& j, const char* key, const std::string& where) {
  if (!j.is_object() || !j.contains(key) || j[key].is_null()) return std::string();
  if (!j[key].is_string()) return d.Bad(where + "." + key, "is not a string");
  return j[key].get<std::string>();
}

StatusOr<bool> Bool(const Doc& d, const Json& j, const char* key, bool dflt, const std::string& where) {
  if (!j.is_object() || !j.contains(key) || j[key].is_null()) return dflt;
  if (!j[key].is_boolean()) return d.Bad(where + "." + key, "is not a boolean");
  return j[key].get<bool>();
}

// A Split/Replace pattern: {"Regex": r} as is, {"String": s} with regex metacharacters escaped.
StatusOr<std::string> PatternRegex(const Doc& d, const Json& p, const std::string& where) {
  if (p.is_object() && p.contains("Regex") && p["Regex"].is_string()) return p["Regex"].get<std::string>();
  if (p.is_object() && p.contains("String") && p["String"].is_string()) {
    std::string out;
    for (const char c : p["String"].get<std::string>()) {
      if (std::string_view("\\^$.|?*+()[]{}").find(c) != std::string_view::npos) out.push_back('\\');
      out.push_back(c);
    }
    return out;
  }
  return d.Bad(where + ".pattern", "is neither {\"Regex\": ...} nor {\"String\": ...}");
}

Status ReadModel(const Doc& d, VocabData* v, bool* byte_fallback, std::string* unk_token) {
  const Json& m = d.root.contains("model") ? d.root["model"] : Json();
  const std::string type = TypeOf(m);
  if (type != "BPE") {
    return d.Unsupported("model.type", "tokenizer model '" + (type.empty() ? std::string("?") : type) +
                                           "' is not supported (only BPE)");
  }
  if (m.contains("dropout") && !m["dropout"].is_null()) return d.Unsupported("model.dropout", "BPE dropout is not supported");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    SLIM_ASSIGN_OR_RETURN(const std::string s, Str(d, m, key, "model"));
    if (!s.empty()) return d.Unsupported(std::string("model.") + key, "'" + s + "' is not supported");
  }
  SLIM_ASSIGN_OR_RETURN(*byte_fallback, Bool(d, m, "byte_fallback", false, "model"));
  SLIM_ASSIGN_OR_RETURN(v->ignore_merges, Bool(d, m, "ignore_merges", false, "model"));
  SLIM_ASSIGN_OR_RETURN(*unk_token, Str(d, m, "unk_token", "model"));
  if (!m.contains("vocab") || !m["vocab"].is_object()) return d.Bad("model.vocab", "is missing or not an object");
  for (const auto& [text, id] : m["vocab"].items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= INT32_MAX) {
      return d.Bad("model.vocab[\"" + text + "\"]", "is not a token id");
    }
    const size_t i = static_cast<size_t>(id.get<int64_t>());
    if (i >= v->tokens.size()) v->tokens.resize(i + 1);
    if (!v->tokens[i].empty()) return d.Bad("model.vocab", "id " + std::to_string(i) + " is used twice");
    v->tokens[i] = text;
  }
  if (!m.contains("merges") || !m["merges"].is_array()) return d.Bad("model.merges", "is missing or not an array");
  for (size_t r = 0; r < m["merges"].size(); ++r) {
    const Json& mg = m["merges"][r];
    const std::string where = "model.merges[" + std::to_string(r) + "]";
    if (mg.is_string()) {
      v->merges.push_back(mg.get<std::string>());
    } else if (mg.is_array() && mg.size() == 2 && mg[0].is_string() && mg[1].is_string()) {
      const std::string left = mg[0].get<std::string>();
      // Merges are kept as "left right", split at the first space after byte 0.
      if (left.find(' ', 1) != std::string::npos) return d.Unsupported(where, "a merge whose left part holds a space");
      v->merges.push_back(left + " " + mg[1].get<std::string>());
    } else {
      return d.Bad(where, "is neither \"a b\" nor [\"a\", \"b\"]");
    }
  }
  return OkStatus();
}

Status ReadAddedTokens(const Doc& d, VocabData* v) {
  if (!d.root.contains("added_tokens") || d.root["added_tokens"].is_null()) return OkStatus();
  const Json& added = d.root["added_tokens"];
  if (!added.is_array()) return d.Bad("added_tokens", "is not an array");
  v->token_types.resize(v->tokens.size(), TokenType::kNormal);
  for (size_t k = 0; k < added.size(); ++k) {
    const Json& a = added[k];
    const std::string where = "added_tokens[" + std::to_string(k) + "]";
    if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() || !a.contains("content") ||
        !a["content"].is_string()) {
      return d.Bad(where, "needs an integer id and a string content");
    }
    const int64_t id = a["id"].get<int64_t>();
    if (id < 0 || id >= INT32_MAX) return d.Bad(where + ".id", "is out of range");
    const std::string content = a["content"].get<std::string>();
    SLIM_ASSIGN_OR_RETURN(const bool special, Bool(d, a, "special", false, where));
    SLIM_ASSIGN_OR_RETURN(const bool lstrip, Bool(d, a, "lstrip", false, where));
    SLIM_ASSIGN_OR_RETURN(const bool rstrip, Bool(d, a, "rstrip", false, where));
    SLIM_ASSIGN_OR_RETURN(const bool single_word, Bool(d, a, "single_word", false, where));
    if (lstrip) return d.Unsupported(where + ".lstrip", "added token '" + content + "' with lstrip is not supported");
    if (single_word) {
      return d.Unsupported(where + ".single_word", "added token '" + content + "' with single_word is not supported");
    }
    const size_t i = static_cast<size_t>(id);
    if (i >= v->tokens.size()) {
      v->tokens.resize(i + 1);
      v->token_types.resize(i + 1, TokenType::kUndefined);
    }
    if (!v->tokens[i].empty() && v->tokens[i] != content) {
      return d.Bad(where, "id " + std::to_string(i) + " is '" + v->tokens[i] + "' in the vocabulary but '" + content + "' here");
    }
    v->tokens[i] = content;
    v->token_types[i] = special ? TokenType::kControl : TokenType::kUserDefined;
    if (rstrip) v->rstrip_ids.push_back(static_cast<int32_t>(i));
  }
  return OkStatus();
}

// One normalizer step (or a Sequence of them).
Status ReadNormalizer(const Doc& d, const Json& n, const std::string& where, VocabData* v) {
  if (n.is_null()) return OkStatus();
  const std::string type = TypeOf(n);
  if (type == "Sequence") {
    if (!n.contains("normalizers") || !n["normalizers"].is_array()) return d.Bad(where, "Sequence without normalizers");
    for (size_t i = 0; i < n["normalizers"].size(); ++i) {
      SLIM_RETURN_IF_ERROR(ReadNormalizer(d, n["normalizers"][i], where + ".normalizers[" + std::to_string(i) + "]", v));
    }
    return OkStatus();
  }
  if (type == "NFC") {
    v->nfc = true;
    return OkStatus();
  }
  if (type == "Prepend") {
    SLIM_ASSIGN_OR_RETURN(const std::string p, Str(d, n, "prepend", where));
    if (p != kEscapedSpace) return d.Unsupported(where, "Prepend of '" + p + "' (only U+2581) is not supported");
    v->space_prefix = VocabData::SpacePrefix::kAlways;
    return OkStatus();
  }
  if (type == "Replace") {
    SLIM_ASSIGN_OR_RETURN(const std::string content, Str(d, n, "content", where));
    const bool space = n.contains("pattern") && n["pattern"].is_object() && n["pattern"].contains("String") &&
                       n["pattern"]["String"] == " ";
    if (!space || content != kEscapedSpace) {
      return d.Unsupported(where, "Replace other than ' ' -> U+2581 is not supported");
    }
    v->escape_whitespace = true;
    return OkStatus();
  }
  return d.Unsupported(where, "normalizer '" + (type.empty() ? std::string("?") : type) + "' is not supported");
}

// One pre-tokenizer step (or a Sequence of them). *byte_level: a ByteLevel step was seen.
Status ReadPreTokenizer(const Doc& d, const Json& p, const std::string& where, VocabData* v, bool* byte_level) {
  if (p.is_null()) return OkStatus();
  const std::string type = TypeOf(p);
  if (type == "Sequence") {
    if (!p.contains("pretokenizers") || !p["pretokenizers"].is_array()) return d.Bad(where, "Sequence without pretokenizers");
    for (size_t i = 0; i < p["pretokenizers"].size(); ++i) {
      SLIM_RETURN_IF_ERROR(ReadPreTokenizer(d, p["pretokenizers"][i], where + ".pretokenizers[" + std::to_string(i) + "]",
                                            v, byte_level));
    }
    return OkStatus();
  }
  if (type == "ByteLevel") {
    SLIM_ASSIGN_OR_RETURN(const bool prefix, Bool(d, p, "add_prefix_space", false, where));
    SLIM_ASSIGN_OR_RETURN(const bool use_regex, Bool(d, p, "use_regex", true, where));
    if (prefix) return d.Unsupported(where + ".add_prefix_space", "ByteLevel with add_prefix_space is not supported");
    if (use_regex) v->split_regexes.push_back(kByteLevelRegex);
    *byte_level = true;
    return OkStatus();
  }
  if (type == "Split") {
    SLIM_ASSIGN_OR_RETURN(const std::string behavior, Str(d, p, "behavior", where));
    SLIM_ASSIGN_OR_RETURN(const bool invert, Bool(d, p, "invert", false, where));
    if (behavior != "Isolated" || invert) {
      return d.Unsupported(where, "Split with behavior '" + behavior + "'" + (invert ? " inverted" : "") +
                                      " is not supported (only Isolated)");
    }
    SLIM_ASSIGN_OR_RETURN(std::string re, PatternRegex(d, p.value("pattern", Json()), where));
    v->split_regexes.push_back(std::move(re));
    return OkStatus();
  }
  if (type == "Digits") {
    SLIM_ASSIGN_OR_RETURN(const bool single, Bool(d, p, "individual_digits", false, where));
    v->split_regexes.push_back(single ? "\\p{N}" : "\\p{N}+");
    return OkStatus();
  }
  if (type == "Metaspace") {
    SLIM_ASSIGN_OR_RETURN(const std::string repl, Str(d, p, "replacement", where));
    SLIM_ASSIGN_OR_RETURN(const bool split, Bool(d, p, "split", true, where));
    SLIM_ASSIGN_OR_RETURN(std::string scheme, Str(d, p, "prepend_scheme", where));
    if (scheme.empty()) {
      SLIM_ASSIGN_OR_RETURN(const bool add_prefix, Bool(d, p, "add_prefix_space", true, where));
      scheme = add_prefix ? "always" : "never";
    }
    if (repl != kEscapedSpace) return d.Unsupported(where, "Metaspace with replacement '" + repl + "'");
    if (split) return d.Unsupported(where + ".split", "Metaspace with split = true is not supported");
    v->escape_whitespace = true;
    if (scheme == "always") v->space_prefix = VocabData::SpacePrefix::kMetaspaceAlways;
    else if (scheme == "first") v->space_prefix = VocabData::SpacePrefix::kMetaspaceFirst;
    else if (scheme != "never") return d.Unsupported(where, "Metaspace prepend_scheme '" + scheme + "'");
    return OkStatus();
  }
  return d.Unsupported(where, "pre-tokenizer '" + (type.empty() ? std::string("?") : type) + "' is not supported");
}

// Decoders are checked, not interpreted: Tokenizer decodes byte-level tokens through the byte
// map and SentencePiece-style ones by U+2581 -> ' ' and <0xNN> -> byte, which is what these do.
Status CheckDecoder(const Doc& d, const Json& dec, const std::string& where) {
  if (dec.is_null()) return OkStatus();
  const std::string type = TypeOf(dec);
  if (type == "Sequence") {
    if (!dec.contains("decoders") || !dec["decoders"].is_array()) return d.Bad(where, "Sequence without decoders");
    for (size_t i = 0; i < dec["decoders"].size(); ++i) {
      SLIM_RETURN_IF_ERROR(CheckDecoder(d, dec["decoders"][i], where + ".decoders[" + std::to_string(i) + "]"));
    }
    return OkStatus();
  }
  if (type == "ByteLevel" || type == "ByteFallback" || type == "Fuse" || type == "Metaspace") return OkStatus();
  if (type == "Replace" && dec.value("content", "") == " " && dec.contains("pattern") &&
      dec["pattern"].value("String", "") == kEscapedSpace) {
    return OkStatus();
  }
  // Strip of the leading space the SentencePiece prefix added (start <= 1, nothing at the end).
  if (type == "Strip" && dec.value("content", "") == " " && dec.value("start", 0) <= 1 && dec.value("stop", 0) == 0) {
    return OkStatus();
  }
  return d.Unsupported(where, "decoder '" + (type.empty() ? std::string("?") : type) + "' is not supported");
}

// TemplateProcessing's "single": a SpecialToken before the sequence is BOS, after it EOS.
Status ReadPostProcessor(const Doc& d, const Json& pp, const std::string& where, VocabData* v) {
  if (pp.is_null()) return OkStatus();
  const std::string type = TypeOf(pp);
  if (type == "Sequence") {
    if (!pp.contains("processors") || !pp["processors"].is_array()) return d.Bad(where, "Sequence without processors");
    for (size_t i = 0; i < pp["processors"].size(); ++i) {
      SLIM_RETURN_IF_ERROR(ReadPostProcessor(d, pp["processors"][i], where + ".processors[" + std::to_string(i) + "]", v));
    }
    return OkStatus();
  }
  if (type == "ByteLevel") return OkStatus();  // offsets only
  if (type != "TemplateProcessing") {
    return d.Unsupported(where, "post-processor '" + (type.empty() ? std::string("?") : type) + "' is not supported");
  }
  if (!pp.contains("single") || !pp["single"].is_array()) return d.Bad(where + ".single", "is missing");
  bool seen_sequence = false;
  for (const Json& piece : pp["single"]) {
    if (piece.contains("Sequence")) {
      seen_sequence = true;
      continue;
    }
    if (!piece.contains("SpecialToken") || !piece["SpecialToken"].contains("id")) continue;
    const std::string text = piece["SpecialToken"]["id"].get<std::string>();
    int32_t id = -1;
    for (size_t i = 0; i < v->tokens.size() && id < 0; ++i) {
      if (v->tokens[i] == text) id = static_cast<int32_t>(i);
    }
    if (id < 0) return d.Bad(where + ".single", "special token '" + text + "' is not in the vocabulary");
    if (seen_sequence) {
      v->add_eos = true;
      v->eos_id = id;
    } else {
      v->add_bos = true;
      v->bos_id = id;
    }
  }
  return OkStatus();
}

int32_t FindId(const VocabData& v, const std::string& text) {
  for (size_t i = 0; i < v.tokens.size(); ++i) {
    if (v.tokens[i] == text) return static_cast<int32_t>(i);
  }
  return -1;
}

// tokenizer_config.json: bos/eos/unk/pad tokens (a string or an AddedToken dict), add_bos_token /
// add_eos_token, chat_template (a string, or a list of named templates: "default").
Status ReadConfig(const Doc& c, VocabData* v) {
  const std::pair<const char*, int32_t*> specials[] = {
      {"bos_token", &v->bos_id}, {"eos_token", &v->eos_id}, {"unk_token", &v->unk_id}, {"pad_token", &v->pad_id}};
  for (const auto& [key, id] : specials) {
    if (!c.root.contains(key) || c.root[key].is_null()) continue;
    const Json& t = c.root[key];
    std::string text;
    if (t.is_string()) {
      text = t.get<std::string>();
    } else if (t.is_object() && t.contains("content") && t["content"].is_string()) {
      text = t["content"].get<std::string>();
    } else {
      return c.Bad(key, "is neither a string nor an AddedToken dict");
    }
    *id = FindId(*v, text);
    if (*id < 0) return c.Bad(key, "'" + text + "' is not in the vocabulary");
  }
  SLIM_ASSIGN_OR_RETURN(v->add_bos, Bool(c, c.root, "add_bos_token", v->add_bos, "add_bos_token"));
  SLIM_ASSIGN_OR_RETURN(v->add_eos, Bool(c, c.root, "add_eos_token", v->add_eos, "add_eos_token"));
  if (c.root.contains("chat_template")) {
    const Json& t = c.root["chat_template"];
    if (t.is_string()) {
      v->chat_template = t.get<std::string>();
    } else if (t.is_array()) {
      for (const Json& named : t) {
        if (named.is_object() && named.value("name", "") == "default" && named.contains("template") &&
            named["template"].is_string()) {
          v->chat_template = named["template"].get<std::string>();
        }
      }
      if (v->chat_template.empty()) return c.Bad("chat_template", "a list without a \"default\" template");
    } else if (!t.is_null()) {
      return c.Bad("chat_template", "is neither a string nor a list of named templates");
    }
  }
  return OkStatus();
}

}  // namespace

StatusOr<VocabData> VocabFromHfDir(const std::string& dir) {
  const std::string tj_path = dir + "/tokenizer.json";
  if (!std::filesystem::exists(tj_path)) return NotFoundError(tj_path + ": no tokenizer.json in " + dir);
  SLIM_ASSIGN_OR_RETURN(const Doc d, ReadJson(tj_path));
  VocabData v;
  v.hf_rules = true;
  bool byte_fallback = false;
  std::string unk_token;
  SLIM_RETURN_IF_ERROR(ReadModel(d, &v, &byte_fallback, &unk_token));
  v.token_types.assign(v.tokens.size(), TokenType::kNormal);
  SLIM_RETURN_IF_ERROR(ReadAddedTokens(d, &v));
  for (size_t i = 0; i < v.tokens.size(); ++i) {
    if (v.tokens[i].empty()) v.token_types[i] = TokenType::kUndefined;  // an id no entry names
  }
  SLIM_RETURN_IF_ERROR(ReadNormalizer(d, d.root.value("normalizer", Json()), "normalizer", &v));
  bool byte_level = false;
  SLIM_RETURN_IF_ERROR(ReadPreTokenizer(d, d.root.value("pre_tokenizer", Json()), "pre_tokenizer", &v, &byte_level));
  SLIM_RETURN_IF_ERROR(CheckDecoder(d, d.root.value("decoder", Json()), "decoder"));
  SLIM_RETURN_IF_ERROR(ReadPostProcessor(d, d.root.value("post_processor", Json()), "post_processor", &v));
  v.byte_level = byte_level;
  if (byte_level && (v.escape_whitespace || v.space_prefix != VocabData::SpacePrefix::kNone)) {
    return d.Unsupported("pre_tokenizer", "ByteLevel together with U+2581 space handling is not supported");
  }
  if (!byte_level) {
    if (!byte_fallback) {
      return d.Unsupported("model.byte_fallback", "BPE over raw text without byte_fallback is not supported");
    }
    for (size_t i = 0; i < v.tokens.size(); ++i) {
      const std::string& t = v.tokens[i];
      unsigned b = 0;
      if (v.token_types[i] == TokenType::kNormal && t.size() == 6 && t.starts_with("<0x") && t[5] == '>' &&
          std::sscanf(t.c_str() + 3, "%2x", &b) == 1) {
        v.token_types[i] = TokenType::kByte;
      }
    }
  }
  v.model = byte_level ? "gpt2" : "hf-bpe";
  v.pre = "tokenizer.json";
  if (!unk_token.empty()) {
    v.unk_id = FindId(v, unk_token);
    if (v.unk_id < 0) return d.Bad("model.unk_token", "'" + unk_token + "' is not in the vocabulary");
    v.token_types[v.unk_id] = TokenType::kUnknown;
  }

  const std::string cfg_path = dir + "/tokenizer_config.json";
  if (std::filesystem::exists(cfg_path)) {
    SLIM_ASSIGN_OR_RETURN(const Doc c, ReadJson(cfg_path));
    SLIM_RETURN_IF_ERROR(ReadConfig(c, &v));
  }
  if (v.chat_template.empty() && std::filesystem::exists(dir + "/chat_template.jinja")) {
    std::ifstream in(dir + "/chat_template.jinja", std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    v.chat_template = ss.str();
  }
  if (v.add_bos && v.bos_id < 0) return InvalidArgumentError(dir + ": add_bos_token is set but there is no bos_token");
  if (v.add_eos && v.eos_id < 0) return InvalidArgumentError(dir + ": add_eos_token is set but there is no eos_token");
  for (size_t i = 0; i < v.tokens.size() && v.eot_id < 0; ++i) {
    if (v.token_types[i] == TokenType::kControl && (v.tokens[i] == "<|im_end|>" || v.tokens[i] == "<|eot_id|>")) {
      v.eot_id = static_cast<int32_t>(i);
    }
  }
  return v;
}

}  // namespace slim
