// sliminfer-bench kv-transfer: the KV store's copy paths measured on one device, side by side
// in one process (bench/kv-store.md): a contiguous pinned copy, one copy per scattered block,
// and one batched copy of the scattered blocks, each way and both ways at once; whole-sequence
// offload / prefetch through the KvStore; and decode ms/token with and without swaps running.
#pragma once

#include "engine/core/status.h"

namespace slim::bench {

Status CmdKvTransfer(int argc, char** argv);

}  // namespace slim::bench
