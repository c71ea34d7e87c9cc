// `sliminfer-bench server`: a closed-loop load generator against a running sliminfer-server
// (built only with gRPC, SLIM_HAVE_GRPC_CLIENT).
#pragma once

#include "engine/core/status.h"

namespace slim::bench {

// argv[1] == "server"; flags from argv[2].
Status CmdServer(int argc, char** argv);

}  // namespace slim::bench
