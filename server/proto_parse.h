// Parsing request messages from raw gRPC byte buffers, so that a request protobuf rejects (a
// proto3 string holding invalid UTF-8, truncated bytes) becomes INVALID_ARGUMENT naming the
// field instead of gRPC's bare UNIMPLEMENTED for undecodable requests.
// Thread-safety: free functions, no state.
#pragma once

#include <grpcpp/support/byte_buffer.h>

#include <cstddef>
#include <string>
#include <string_view>

#include <google/protobuf/message.h>

#include "engine/core/status.h"

namespace slim::server {

// Byte offset of the first invalid UTF-8 sequence in `s` (overlong forms, surrogates and code
// points above U+10FFFF are invalid), or npos.
size_t FindInvalidUtf8(std::string_view s);

// Walks the wire bytes of a `descriptor` message and returns INVALID_ARGUMENT naming the first
// string field (as a path such as "chat.messages[1].content") that is not valid UTF-8; OK if
// none is.
Status CheckUtf8Fields(std::string_view wire, const google::protobuf::Descriptor* descriptor);

// Parses `buffer` into `message`: INVALID_ARGUMENT naming the field for invalid UTF-8, or
// saying the bytes are not a valid message of that type.
Status ParseRequest(const grpc::ByteBuffer& buffer, google::protobuf::Message* message);

// Serializes `message` into a byte buffer for a raw (ByteBuffer) reactor.
grpc::ByteBuffer SerializeToBuffer(const google::protobuf::Message& message);

}  // namespace slim::server
