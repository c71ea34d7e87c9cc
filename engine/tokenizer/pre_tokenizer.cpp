// The pre-tokenizer regex table and its translation for PCRE2.
#include "engine/tokenizer/pre_tokenizer.h"

#include <vector>
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
// \p{L}, \p{N} and \p{P} gain the Unicode 15 additions (inside or outside a character class),
// the letter subcategories become \p{L} and \d becomes [0-9] (see below).
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
      } else if (rest.starts_with("\\p{Lu}") || rest.starts_with("\\p{Ll}") || rest.starts_with("\\p{Lt}") ||
                 rest.starts_with("\\p{Lm}") || rest.starts_with("\\p{Lo}")) {
        // llama.cpp collapses every letter to one class before matching, so the letter
        // subcategories all mean \p{L} there.
        add_class("\\p{L}" + std::string(kUnicode15Letters));
        i += 5;
        continue;
      } else if (e == 'd') {
        add_class("0-9");  // std::regex's \d: ASCII digits only
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

// The pre-tokenizer regexes of llama.cpp (llm_tokenizer_bpe) for each tokenizer.ggml.pre value.
// llama.cpp runs the GPT-2 regex through a hand-written splitter that also has a final |\s+
// branch; it is written out here. Its digit-grouping splitter (AFMoE, Tiny Aya: runs of \p{N}
// cut into groups of three from the right) is written as the regex it implements.
constexpr const char* kGpt2Regex =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
constexpr const char* kDigitGroupsRegex = "\\p{N}{1,3}(?=(?:\\p{N}{3})*(?!\\p{N}))";

struct PreTokenizerRow {
  const char* names[16];   // up to the first nullptr
  const char* regexes[8];  // up to the first nullptr
  bool ignore_merges;
  bool raw_utf8;
  bool escape_whitespace;
  bool newline_pieces_whole;
};

// The rows follow llama.cpp's llama_vocab::impl::load (names, ignore_merges, escape_whitespaces)
// and llm_tokenizer_bpe's constructor (regexes, byte_encode), in their order.
constexpr PreTokenizerRow kRows[] = {
  {{"default"},
   {"[\\p{P}\\$\\+<=>\\^~\\|]+",
    kGpt2Regex,
    "\\p{N}+",
    "[0-9][0-9][0-9]"},
   false, false, false, false},
  {{"minicpm5"},
   {"\\p{N}{1,3}",
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}+| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
   true, false, false, false},
  {{"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano"},
   {"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
   true, false, false, false},
  {{"deepseek-llm"},
   {"[\r\n]",
    "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
    "\\s?[!-/:-~！-／：-～‘-‟　-。]+",
    "\\s+$",
    "[一-龥ࠀ-一가-퟿]+",
    "\\p{N}+"},
   false, false, false, false},
  {{"deepseek-coder"},
   {"[\r\n]",
    "\\s?\\p{L}+",
    "\\s?\\p{P}+",
    "[一-龥ࠀ-一가-퟿]+",
    "\\p{N}"},
   false, false, false, false},
  {{"deepseek-v3"},
   {"\\p{N}{1,3}",
    "[一-龥぀-ゟ゠-ヿ]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"},
   false, false, false, false},
  {{"spark2_5"},
   {"\\p{N}{1,3}",
    "[一-龥぀-ゟ゠-ヿ]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+|[\r\n]|\\s+(?!\\S)|\\s+",
    "\\p{N}"},
   false, false, false, false},
  {{"youtu"},
   {"[가-힣ㄱ-ㆎ]+|[！…“”‘’—：；，、-〿︰-﹏]+|[ㄅ-ㄯ]+|[一-龥぀-ゟ゠-ヿ]+",
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
   true, false, false, false},
  {{"falcon"},
   {"[\\p{P}\\$\\+<=>\\^~\\|`]+",
    kGpt2Regex,
    "[0-9][0-9][0-9]"},
   false, false, false, false},
  {{"mpt"},
   {kGpt2Regex},
   false, false, false, false},
  {{"starcoder"},
   {"\\p{N}",
    kGpt2Regex},
   false, false, false, false},
  {{"gpt-2", "gpt2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0", "mellum", "modern-bert", "jina-v1-en", "jina-v2-code", "roberta-bpe", "exaone4"},
   {kGpt2Regex},
   false, false, false, false},
  {{"jais-2"},
   {"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s{512}(?!\\S)|\\s{256}(?!\\S)|\\s{128}(?!\\S)|\\s{64}(?!\\S)|\\s{32}(?!\\S)|\\s{16}(?!\\S)|\\s{8}(?!\\S)|\\s{4}(?!\\S)|\\s{1,2}(?!\\S)|\\s{1}"},
   false, false, false, false},
  {{"gemma4", "granite-embed-multi-311m"},
   {"[^\\n]+|[\\n]+"},
   false, true, true, true},
  {{"sarvam-moe"},
   {"[^\\n]+|[\\n]+"},
   false, true, true, false},
  {{"whitespace"},
   {"\\S+"},
   false, true, false, false},
  {{"refact"},
   {"\\p{N}",
    kGpt2Regex},
   false, false, false, false},
  {{"command-r"},
   {"\\p{N}",
    kGpt2Regex},
   false, false, false, false},
  {{"qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez"},
   {"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
   false, false, false, false},
  {{"qwen35"},
   {"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
   false, false, false, false},
  {{"stablelm2"},
   {"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
   false, false, false, false},
  {{"olmo"},
   {kGpt2Regex},
   false, false, false, false},
  {{"dbrx"},
   {"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
   false, false, false, false},
  {{"smaug-bpe"},
   {"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
   false, false, false, false},
  {{"poro-chat"},
   {" ?[^(\\s|.,!?…。，、।۔،)]+"},
   false, false, false, false},
  {{"chatglm-bpe"},
   {"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
   false, false, false, false},
  {{"glm4", "glm5"},
   {"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
   true, false, false, false},
  {{"viking"},
   {" ?[^(\\s|.,!?…。，、।۔،)]+",
    "\\p{N}"},
   false, false, false, false},
  {{"jais"},
   {kGpt2Regex},
   false, false, false, false},
  {{"tekken"},
   {"[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
   true, false, false, false},
  {{"smollm"},
   {"\\p{N}",
    kGpt2Regex},
   false, false, false, false},
  {{"codeshell"},
   {"\\p{N}",
    kGpt2Regex},
   false, false, false, false},
  {{"bloom"},
   {" ?[^(\\s|.,!?…。，、।۔،)]+"},
   false, false, false, false},
  {{"gpt3-finnish"},
   {" ?[^(\\s|.,!?…。，、।۔،)]+"},
   false, false, false, false},
  {{"exaone"},
   {"\\p{N}",
    kGpt2Regex},
   false, false, false, false},
  {{"exaone-moe"},
   {"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?(?:\\p{L}\\p{M}*(?: \\p{L}\\p{M}*)*)+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]?|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+"},
   false, false, false, false},
  {{"chameleon"},
   {"<sentinel:[0-9]+>",
    "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z",
    "([\\t\\n]|    |  )",
    "\\p{N}",
    "[\\p{P}!-/:-@\\[-`{-~]",
    kGpt2Regex},
   false, false, false, false},
  {{"minerva-7b"},
   {"\\p{N}",
    kGpt2Regex},
   false, false, false, false},
  {{"gpt-4o", "llama4", "kanana2", "talkie"},
   {"[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
   false, false, false, false},
  {{"granite-embed-multi-97m"},
   {"[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}\\p{M}])([^a-z]))*((?=[\\p{L}\\p{M}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}\\p{M}])([^a-z]))+((?=[\\p{L}\\p{M}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
   true, false, false, false},
  {{"tiny_aya", "cohere2moe"},
   {kDigitGroupsRegex,
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
   false, false, false, false},
  {{"superbpe"},
   {"\\p{N}+",
    "(?=(\\d{3})+(?!\\d))"},
   false, false, false, false},
  {{"trillion"},
   {kGpt2Regex},
   false, false, false, false},
  {{"granite-docling"},
   {kGpt2Regex},
   false, false, false, false},
  {{"bailingmoe", "bailingmoe2", "llada-moe"},
   {"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+"},
   false, false, false, false},
  {{"seed-coder"},
   {"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
   false, false, false, false},
  {{"hunyuan"},
   {"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
   false, false, false, false},
  {{"hunyuan-dense"},
   {"\\p{N}{1,3}",
    "[一-龥぀-ゟ゠-ヿ]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"},
   false, false, false, false},
  {{"hy_v4"},
   {"\\p{N}{1,3}",
    "[一-龥぀-ゟ゠-ヿ]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"},
   false, false, false, false},
  {{"joyai-llm"},
   {"\\p{N}{1,3}",
    "[一-龥぀-ゟ゠-ヿ]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"},
   false, false, false, false},
  {{"ufakzeka"},
   {"[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
   false, false, false, false},
  {{"grok-2"},
   {"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
   false, false, false, false},
  {{"afmoe"},
   {kDigitGroupsRegex,
    "[一-鿿㐀-䶿豈-﫿぀-ゟ゠-ヿ･-ﾟ⼀-⿟เ-๿຀-໿ក-៿က-႟ꩠ-ꩿꧠ-꧿가-힯ᄀ-ᇿ]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
   false, false, false, false},
  {{"laguna"},
   {"[^\\n]+|[\\n]+",
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
   false, false, false, false},
  {{"minimax-m2"},
   {"[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
   false, false, false, false},
  {{"solar-open"},
   {"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
   false, false, false, false},
  {{"mellum2"},
   {"\\p{N}",
    kGpt2Regex},
   false, false, false, false},
};

}  // namespace

StatusOr<PreTokenizerSpec> PreTokenizerFor(const std::string& pre) {
  // llama.cpp's fallback for BPE vocabularies without a pre-tokenizer name is "default".
  const std::string name = pre.empty() ? "default" : pre;
  for (const PreTokenizerRow& row : kRows) {
    for (const char* const* n = row.names; *n != nullptr; ++n) {
      if (name != *n) continue;
      PreTokenizerSpec spec;
      for (const char* const* re = row.regexes; *re != nullptr; ++re) spec.regexes.emplace_back(*re);
      spec.ignore_merges = row.ignore_merges;
      spec.byte_encode = !row.raw_utf8;
      spec.escape_whitespace = row.escape_whitespace;
      spec.newline_pieces_whole = row.newline_pieces_whole;
      return spec;
    }
  }
  if (name == "kimi-k2") {
    return UnimplementedError("unsupported pre-tokenizer 'kimi-k2' (tokenizer.ggml.pre): llama.cpp splits it "
                              "with hand-written code, not a regex");
  }
  return UnimplementedError("unsupported pre-tokenizer '" + pre + "' (tokenizer.ggml.pre); supported: every name "
                            "llama.cpp knows but kimi-k2 (e.g. default, gpt-2, llama-bpe, qwen2, smollm, "
                            "deepseek-llm, tekken, gemma4)");
}

std::vector<std::string> KnownPreTokenizers() {
  std::vector<std::string> names;
  for (const PreTokenizerRow& row : kRows) {
    for (const char* const* n = row.names; *n != nullptr; ++n) names.emplace_back(*n);
  }
  return names;
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
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY, &err, &err_offset, nullptr);
  if (code == nullptr) {
    return InternalError("pre-tokenizer regex /" + source + "/ does not compile at offset " +
                         std::to_string(err_offset) + ": " + Pcre2ErrorText(err));
  }
  // JIT is an optimisation only: without it pcre2_match interprets the pattern.
  (void)pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  return Pcre2Code(code);
}

}  // namespace slim
