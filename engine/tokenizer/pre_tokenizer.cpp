// The pre-tokenizer regex table and its translation for PCRE2.
#include "engine/tokenizer/pre_tokenizer.h"

#include <initializer_list>
#include <string_view>

namespace slim {
namespace {

// llama.cpp's whitespace (the Unicode White_Space property). PCRE2's \s under UCP differs (it
// has U+180E in some versions and follows PCRE2's Unicode version), so \s and \S are rewritten
// to this class.
constexpr std::string_view kWhitespaceClass =
    "\\t\\n\\x{0B}\\f\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}";

// llama.cpp's category tables (unicode-data.cpp) follow Unicode 15.1; PCRE2 10.42 follows
// Unicode 14. These code points became letters, numbers or punctuation in 15.0/15.1 and are
// added to \p{L}, \p{N}, \p{P}. (Checked against llama-cpp-python 0.3.36 over every code point.
// A PCRE2 on Unicode 16 or later would add letters that llama.cpp does not know yet.)
constexpr std::string_view kUnicode15Letters =
    "\\x{1123F}-\\x{11240}\\x{11F02}\\x{11F04}-\\x{11F10}\\x{11F12}-\\x{11F33}\\x{1342F}"
    "\\x{13441}-\\x{13446}\\x{1B132}\\x{1B155}\\x{1DF25}-\\x{1DF2A}\\x{1E030}-\\x{1E06D}"
    "\\x{1E4D0}-\\x{1E4EB}\\x{2B739}\\x{2EBF0}-\\x{2EE5D}\\x{31350}-\\x{323AF}";
constexpr std::string_view kUnicode15Numbers = "\\x{11F50}-\\x{11F59}\\x{1D2C0}-\\x{1D2D3}\\x{1E4F0}-\\x{1E4F9}";
constexpr std::string_view kUnicode15Punctuation = "\\x{11B00}-\\x{11B09}\\x{11F43}-\\x{11F4F}";

// Rewrites llama.cpp's regex dialect for PCRE2: \s and \S become the explicit whitespace class,
// \p{L}, \p{N} and \p{P} gain the Unicode 15 additions (inside or outside a character class).
std::string TranslateRegex(std::string_view re) {
  std::string out;
  bool in_class = false;
  auto add_class = [&](std::string_view body) {
    if (in_class) {
      out += body;
    } else {
      out += '[';
      out += body;
      out += ']';
    }
  };
  for (size_t i = 0; i < re.size(); ++i) {
    const char c = re[i];
    if (c == '\\' && i + 1 < re.size()) {
      const char e = re[i + 1];
      const std::string_view rest = re.substr(i);
      if (e == 's') {
        add_class(kWhitespaceClass);
      } else if (e == 'S' && !in_class) {
        out += "[^" + std::string(kWhitespaceClass) + "]";
      } else if (rest.starts_with("\\p{L}")) {
        add_class("\\p{L}" + std::string(kUnicode15Letters));
        i += 4;
        continue;
      } else if (rest.starts_with("\\p{N}")) {
        add_class("\\p{N}" + std::string(kUnicode15Numbers));
        i += 4;
        continue;
      } else if (rest.starts_with("\\p{P}")) {
        add_class("\\p{P}" + std::string(kUnicode15Punctuation));
        i += 4;
        continue;
      } else {
        out += c;
        out += e;
      }
      ++i;
      continue;
    }
    if (c == '[' && !in_class) in_class = true;
    else if (c == ']' && in_class) in_class = false;
    out += c;
  }
  return out;
}

// The pre-tokenizer regexes of llama.cpp (llm_tokenizer_bpe) for a tokenizer.ggml.pre value.
// llama.cpp runs the GPT-2 regex through a hand-written splitter that also has a final |\s+
// branch; it is written out here. The Llama-3 family's contractions use the explicit [sS]
// form as in llama.cpp, since PCRE2's caseless 's' would also match U+017F.
constexpr const char* kGpt2Regex =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
constexpr const char* kLlama3Regex =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
constexpr const char* kQwen2Regex =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

bool OneOf(const std::string& s, std::initializer_list<const char*> names) {
  for (const char* n : names) {
    if (s == n) return true;
  }
  return false;
}


}  // namespace

StatusOr<PreTokenizerSpec> PreTokenizerFor(const std::string& pre) {
  PreTokenizerSpec spec;
  if (pre.empty() || pre == "default") {
    // llama.cpp's fallback for BPE vocabularies without a pre-tokenizer name.
    spec.regexes = {"[\\p{P}\\$\\+<=>\\^~\\|]+", kGpt2Regex, "\\p{N}+", "[0-9][0-9][0-9]"};
  } else if (OneOf(pre, {"gpt2", "gpt-2", "phi-2", "mpt", "olmo", "jais", "exaone4"})) {
    spec.regexes = {kGpt2Regex};
  } else if (OneOf(pre, {"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b"})) {
    spec.regexes = {"\\p{N}", kGpt2Regex};
  } else if (OneOf(pre, {"llama3", "llama-v3", "llama-bpe", "falcon3", "pixtral"})) {
    spec.regexes = {kLlama3Regex};
    spec.ignore_merges = true;
  } else if (OneOf(pre, {"dbrx", "smaug-bpe"})) {
    spec.regexes = {kLlama3Regex};
  } else if (OneOf(pre, {"qwen2", "deepseek-r1-qwen", "stablelm2", "megrez"})) {
    spec.regexes = {kQwen2Regex};
  } else if (pre == "falcon") {
    spec.regexes = {"[\\p{P}\\$\\+<=>\\^~\\|`]+", kGpt2Regex, "[0-9][0-9][0-9]"};
  } else {
    return UnimplementedError("unsupported pre-tokenizer '" + pre +
                              "' (tokenizer.ggml.pre); supported: default, gpt2, smollm, starcoder, "
                              "refact, command-r, llama3/llama-bpe, dbrx, qwen2, stablelm2, falcon");
  }
  return spec;
}

std::string Pcre2ErrorText(int code) {
  PCRE2_UCHAR buf[256];
  if (pcre2_get_error_message(code, buf, sizeof(buf)) < 0) return "error " + std::to_string(code);
  return reinterpret_cast<const char*>(buf);
}

StatusOr<Pcre2Code> CompileRegex(const std::string& source) {
  const std::string pattern = TranslateRegex(source);
  int err = 0;
  PCRE2_SIZE err_offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_UCP, &err, &err_offset, nullptr);
  if (code == nullptr) {
    return InternalError("pre-tokenizer regex /" + source + "/ does not compile at offset " +
                         std::to_string(err_offset) + ": " + Pcre2ErrorText(err));
  }
  // JIT is an optimisation only: without it pcre2_match interprets the pattern.
  (void)pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  return Pcre2Code(code);
}

}  // namespace slim
