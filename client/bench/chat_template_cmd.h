// `sliminfer-bench chat-template`: renders a chat (a JSON messages file) with a model's or a
// file's Jinja chat template and prints exactly the rendered text.
#pragma once

#include "engine/core/status.h"

namespace slim::bench {

Status CmdChatTemplate(int argc, char** argv);

}  // namespace slim::bench
