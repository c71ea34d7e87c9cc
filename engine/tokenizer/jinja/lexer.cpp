// Jinja lexer: text/tag splitting, whitespace control as jinja2's lexer applies it, and the
// expression tokens inside tags (names, numbers, Python-escaped strings, operators).
#include "engine/tokenizer/jinja/lexer.h"

#include <cctype>

#include "engine/tokenizer/utf8.h"

namespace slim::jinja {
namespace {

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

Status Error(int line, const std::string& what) {
  return InvalidArgumentError("chat template: line " + std::to_string(line) + ": " + what);
}


// Reads the string literal opening at src[*i]; Python's unicode-escape rules, unknown escapes
// kept with their backslash.
Status LexString(std::string_view src, size_t* i, int* line, std::string* out) {
  const char q = src[*i];
  size_t p = *i + 1;
  while (p < src.size() && src[p] != q) {
    char c = src[p];
    if (c == '\n') ++*line;
    if (c != '\\' || p + 1 >= src.size()) {
      out->push_back(c);
      ++p;
      continue;
    }
    const char e = src[p + 1];
    p += 2;
    switch (e) {
      case 'n': out->push_back('\n'); break;
      case 't': out->push_back('\t'); break;
      case 'r': out->push_back('\r'); break;
      case 'a': out->push_back('\a'); break;
      case 'b': out->push_back('\b'); break;
      case 'f': out->push_back('\f'); break;
      case 'v': out->push_back('\v'); break;
      case '0': out->push_back('\0'); break;
      case '\\': case '\'': case '"': out->push_back(e); break;
      case '\n': ++*line; break;  // line continuation
      case 'x': case 'u': case 'U': {
        const size_t n = e == 'x' ? 2 : (e == 'u' ? 4 : 8);
        if (p + n > src.size()) return Error(*line, "truncated \\" + std::string(1, e) + " escape");
        uint32_t cp = 0;
        for (size_t k = 0; k < n; ++k) {
          const char h = src[p + k];
          if (!std::isxdigit(static_cast<unsigned char>(h))) return Error(*line, "bad \\" + std::string(1, e) + " escape");
          cp = cp * 16 + static_cast<uint32_t>(std::isdigit(static_cast<unsigned char>(h)) ? h - '0' : (std::tolower(h) - 'a' + 10));
        }
        p += n;
        AppendUtf8(cp, out);
        break;
      }
      default:
        out->push_back('\\');
        out->push_back(e);
    }
  }
  if (p >= src.size()) return Error(*line, "unterminated string literal");
  *i = p + 1;
  return OkStatus();
}

// Lexes the expression tokens of one tag from src[*i] up to its end marker ("}}" or "%}", with
// an optional '-' or '+' before it). Sets *strip_after / *keep_after from that sign.
Status LexTag(std::string_view src, size_t* i, int* line, bool is_block, std::vector<Token>* out,
              bool* strip_after, bool* keep_after) {
  int depth = 0;  // open ( [ {: a '}' inside them is punctuation, not the end of the tag
  const char end_ch = is_block ? '%' : '}';
  while (*i < src.size()) {
    const char c = src[*i];
    if (IsSpace(c)) {
      if (c == '\n') ++*line;
      ++*i;
      continue;
    }
    if ((c == '-' || c == '+') && depth == 0 && src.substr(*i + 1, 2) == std::string{end_ch, '}'}) {
      *strip_after = c == '-';
      *keep_after = c == '+';
      *i += 3;
      out->push_back({is_block ? Tok::kBlockEnd : Tok::kVarEnd, "", *line});
      return OkStatus();
    }
    if (depth == 0 && src.substr(*i, 2) == std::string{end_ch, '}'}) {
      *i += 2;
      out->push_back({is_block ? Tok::kBlockEnd : Tok::kVarEnd, "", *line});
      return OkStatus();
    }
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t e = *i;
      while (e < src.size() && (std::isalnum(static_cast<unsigned char>(src[e])) || src[e] == '_')) ++e;
      out->push_back({Tok::kName, std::string(src.substr(*i, e - *i)), *line});
      *i = e;
      continue;
    }
    if (std::isdigit(static_cast<unsigned char>(c))) {
      size_t e = *i;
      bool is_float = false;
      while (e < src.size() && (std::isdigit(static_cast<unsigned char>(src[e])) || src[e] == '_')) ++e;
      if (e + 1 < src.size() && src[e] == '.' && std::isdigit(static_cast<unsigned char>(src[e + 1]))) {
        is_float = true;
        ++e;
        while (e < src.size() && std::isdigit(static_cast<unsigned char>(src[e]))) ++e;
      }
      if (e < src.size() && (src[e] == 'e' || src[e] == 'E')) {
        size_t x = e + 1;
        if (x < src.size() && (src[x] == '+' || src[x] == '-')) ++x;
        if (x < src.size() && std::isdigit(static_cast<unsigned char>(src[x]))) {
          is_float = true;
          e = x;
          while (e < src.size() && std::isdigit(static_cast<unsigned char>(src[e]))) ++e;
        }
      }
      std::string num;
      for (size_t k = *i; k < e; ++k) {
        if (src[k] != '_') num.push_back(src[k]);
      }
      out->push_back({is_float ? Tok::kFloat : Tok::kInt, num, *line});
      *i = e;
      continue;
    }
    if (c == '\'' || c == '"') {
      Token t{Tok::kString, "", *line};
      SLIM_RETURN_IF_ERROR(LexString(src, i, line, &t.value));
      out->push_back(std::move(t));
      continue;
    }
    static constexpr std::string_view kTwo[] = {"//", "**", "==", "!=", "<=", ">="};
    bool two = false;
    for (std::string_view op : kTwo) {
      if (src.substr(*i, 2) == op) {
        out->push_back({Tok::kOp, std::string(op), *line});
        *i += 2;
        two = true;
        break;
      }
    }
    if (two) continue;
    if (std::string_view("+-*/%~<>=()[]{},.:|").find(c) == std::string_view::npos) {
      return Error(*line, std::string("unexpected character '") + c + "'");
    }
    if (c == '(' || c == '[' || c == '{') ++depth;
    if (c == ')' || c == ']' || c == '}') --depth;
    out->push_back({Tok::kOp, std::string(1, c), *line});
    ++*i;
  }
  return Error(*line, is_block ? "unterminated {% tag" : "unterminated {{ tag");
}

// Strips, per jinja2's lstrip_blocks, the spaces and tabs that start the text's last line when
// nothing else precedes the tag on that line.
void LstripBlock(std::string* text, bool line_starting) {
  const size_t nl = text->rfind('\n');
  const size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
  if (l_pos == 0 && !line_starting) return;
  for (size_t k = l_pos; k < text->size(); ++k) {
    if (!IsSpace((*text)[k])) return;
  }
  text->resize(l_pos);
}

}  // namespace

StatusOr<std::vector<Token>> Lex(std::string_view src, const LexOptions& options) {
  // jinja2 (keep_trailing_newline=False) drops one newline at the end of the source.
  if (!src.empty() && src.back() == '\n') src.remove_suffix(1);
  std::vector<Token> out;
  size_t i = 0;
  int line = 1;
  bool line_starting = true;  // the previous tag's match ended with a newline (or at start)
  bool strip_next = false;    // the previous tag ended with '-': strip leading whitespace
  bool trim_next = false;     // trim_blocks: drop one newline after the previous block/comment
  while (i <= src.size()) {
    size_t open = i;
    while ((open = src.find('{', open)) != std::string_view::npos) {
      if (open + 1 < src.size() && (src[open + 1] == '{' || src[open + 1] == '%' || src[open + 1] == '#')) break;
      ++open;
    }
    std::string text(src.substr(i, open == std::string_view::npos ? std::string_view::npos : open - i));
    const int text_line = line;
    for (char c : text) line += c == '\n';
    if (strip_next) {
      size_t k = 0;
      while (k < text.size() && IsSpace(text[k])) ++k;
      text.erase(0, k);
    } else if (trim_next && !text.empty() && text[0] == '\n') {
      text.erase(0, 1);
    }
    if (open == std::string_view::npos) {
      if (!text.empty()) out.push_back({Tok::kText, std::move(text), text_line});
      break;
    }
    const char kind = src[open + 1];
    size_t p = open + 2;
    const char sign = p < src.size() ? src[p] : '\0';
    if (sign == '-' || sign == '+') ++p;
    if (sign == '-') {
      while (!text.empty() && IsSpace(text.back())) text.pop_back();
    } else if (sign != '+' && kind != '{' && options.lstrip_blocks) {
      LstripBlock(&text, line_starting);
    }
    if (!text.empty()) out.push_back({Tok::kText, std::move(text), text_line});
    bool strip_after = false, keep_after = false;
    if (kind == '#') {
      const size_t close = src.find("#}", p);
      if (close == std::string_view::npos) return Error(line, "unterminated comment");
      for (size_t k = p; k < close; ++k) line += src[k] == '\n';
      strip_after = close > p && src[close - 1] == '-';
      keep_after = close > p && src[close - 1] == '+';
      i = close + 2;
    } else {
      const bool is_block = kind == '%';
      out.push_back({is_block ? Tok::kBlockBegin : Tok::kVarBegin, "", line});
      SLIM_RETURN_IF_ERROR(LexTag(src, &p, &line, is_block, &out, &strip_after, &keep_after));
      i = p;
      // {% raw %}: everything up to {% endraw %} is text.
      const size_t n = out.size();
      if (is_block && n >= 3 && out[n - 2].type == Tok::kName && out[n - 2].value == "raw" &&
          out[n - 3].type == Tok::kBlockBegin) {
        out.resize(n - 3);
        size_t end = i;
        size_t body_end = std::string_view::npos;
        while ((end = src.find("{%", end)) != std::string_view::npos) {
          size_t q = end + 2;
          if (q < src.size() && (src[q] == '-' || src[q] == '+')) ++q;
          while (q < src.size() && IsSpace(src[q])) ++q;
          if (src.substr(q, 6) == "endraw") {
            body_end = end;
            break;
          }
          end += 2;
        }
        if (body_end == std::string_view::npos) return Error(line, "unterminated {% raw %}");
        std::string body(src.substr(i, body_end - i));
        if (!strip_after && options.trim_blocks && !keep_after && !body.empty() && body[0] == '\n') body.erase(0, 1);
        if (strip_after) {
          size_t k = 0;
          while (k < body.size() && IsSpace(body[k])) ++k;
          body.erase(0, k);
        }
        if (body_end + 2 < src.size() && src[body_end + 2] == '-') {
          while (!body.empty() && IsSpace(body.back())) body.pop_back();
        }
        for (char c : body) line += c == '\n';
        if (!body.empty()) out.push_back({Tok::kText, std::move(body), line});
        const size_t close = src.find("%}", body_end);
        if (close == std::string_view::npos) return Error(line, "unterminated {% endraw %}");
        strip_after = close > 0 && src[close - 1] == '-';
        keep_after = close > 0 && src[close - 1] == '+';
        i = close + 2;
      }
    }
    strip_next = strip_after;
    trim_next = kind != '{' && options.trim_blocks && !keep_after;
    // jinja2's line_starting: the tag's match (with what it consumed after) ended in '\n'.
    line_starting = false;
    if (strip_after) {
      size_t k = i;
      while (k < src.size() && IsSpace(src[k])) ++k;
      line_starting = k > i && src[k - 1] == '\n';
    } else if (trim_next && i < src.size() && src[i] == '\n') {
      line_starting = true;
    }
  }
  out.push_back({Tok::kEof, "", line});
  return out;
}

}  // namespace slim::jinja
