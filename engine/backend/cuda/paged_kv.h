// Device view of the paged KV blocks of one batch (kvstore/kv_store.h layout, bf16): the arena,
// per-sequence descriptors and their block tables, as kv_write, flash_attention and
// decode_attention read them. Plain structs, passed to kernels by value.
#pragma once

#include <cstdint>

namespace slim::cuda {

struct PagedSeq {
  int32_t row_begin = 0;     // first row of this sequence in q / k / v / out
  int32_t n_rows = 0;        // new tokens of this sequence
  int32_t n_past = 0;        // tokens already stored at this layer
  int32_t table_offset = 0;  // its block ids are tables[table_offset, ...)
};

// Block b of the arena: K [n_kv_heads][block_tokens][head_dim], then V likewise.
//   K of head g, token slot t:  arena + b * block_bytes + g * head_bytes + t * head_dim * 2
//   V of head g, token slot t:  the same + n_kv_heads * head_bytes
struct PagedKv {
  uint8_t* arena = nullptr;
  int64_t n_blocks = 0;          // blocks in the arena
  int64_t block_bytes = 0;
  int64_t head_bytes = 0;        // block_tokens * head_dim * sizeof(bf16)
  int n_kv_heads = 0;
  int head_dim = 0;
  int block_tokens = 0;
  int n_seqs = 0;
  const PagedSeq* seqs = nullptr;   // [n_seqs], device
  const int32_t* tables = nullptr;  // concatenated block tables, device
};

}  // namespace slim::cuda
