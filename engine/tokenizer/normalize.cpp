// NfcNormalize over ICU's Normalizer2.
#include "engine/tokenizer/normalize.h"

#include <unicode/normalizer2.h>
#include <unicode/unistr.h>

namespace slim {

StatusOr<std::string> NfcNormalize(std::string_view text) {
  UErrorCode err = U_ZERO_ERROR;
  const icu::Normalizer2* nfc = icu::Normalizer2::getNFCInstance(err);
  if (U_FAILURE(err) || nfc == nullptr) return InternalError(std::string("ICU NFC normalizer: ") + u_errorName(err));
  const icu::UnicodeString in = icu::UnicodeString::fromUTF8(icu::StringPiece(text.data(), static_cast<int32_t>(text.size())));
  if (nfc->isNormalized(in, err) && U_SUCCESS(err)) return std::string(text);
  err = U_ZERO_ERROR;
  const icu::UnicodeString out = nfc->normalize(in, err);
  if (U_FAILURE(err)) return InternalError(std::string("ICU NFC normalization failed: ") + u_errorName(err));
  std::string result;
  out.toUTF8String(result);
  return result;
}

}  // namespace slim
