// VocabFromHfDir: a Hugging Face tokenizer folder (tokenizer.json, tokenizer_config.json and
// optionally chat_template.jinja) read into VocabData for Tokenizer::Create. Supported: the BPE
// model (vocab, merges as "a b" strings or [a, b] lists, byte_fallback, ignore_merges), added
// tokens (special -> control, others -> user-defined; rstrip), the normalizers NFC, Prepend("▁")
// and Replace(" ", "▁") (Llama-2/Mistral-style SentencePiece-as-BPE), the pre-tokenizers
// ByteLevel, Split (its regex taken as is), Digits, Metaspace and Sequence of them, the decoders
// these families use, and TemplateProcessing's BOS/EOS. Anything else is refused by name.
// Thread-safety: a free function; reads files only.
#pragma once

#include <string>

#include "engine/core/status.h"
#include "engine/tokenizer/vocab.h"

namespace slim {

// NotFound when tokenizer.json is missing; InvalidArgument naming the file and the JSON path for
// malformed content; Unimplemented naming the model type, normalizer, pre-tokenizer, decoder or
// option we do not implement.
StatusOr<VocabData> VocabFromHfDir(const std::string& dir);

}  // namespace slim
