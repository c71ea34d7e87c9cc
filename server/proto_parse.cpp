// Raw request parsing with field-naming UTF-8 errors, and response serialization.
#include "server/proto_parse.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>

#include <map>
#include <vector>

namespace slim::server {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::internal::WireFormatLite;

constexpr int kMaxDepth = 32;

Status Walk(google::protobuf::io::CodedInputStream* in, const Descriptor* d, const std::string& path, int depth) {
  if (depth > kMaxDepth) return OkStatus();  // the real parser reports nesting too deep
  std::map<int, int> seen;                   // field number -> occurrences so far
  for (;;) {
    const uint32_t tag = in->ReadTag();
    if (tag == 0) return OkStatus();
    const int number = WireFormatLite::GetTagFieldNumber(tag);
    const FieldDescriptor* f = d->FindFieldByNumber(number);
    if (WireFormatLite::GetTagWireType(tag) != WireFormatLite::WIRETYPE_LENGTH_DELIMITED || f == nullptr ||
        (f->type() != FieldDescriptor::TYPE_STRING && f->type() != FieldDescriptor::TYPE_MESSAGE)) {
      if (!WireFormatLite::SkipField(in, tag)) return OkStatus();  // malformed: the parser says so
      continue;
    }
    uint32_t len = 0;
    if (!in->ReadVarint32(&len)) return OkStatus();
    std::string name = (path.empty() ? "" : path + ".") + f->name();
    const int index = seen[number]++;
    if (f->is_repeated()) name += "[" + std::to_string(index) + "]";
    if (f->type() == FieldDescriptor::TYPE_STRING) {
      std::string s;
      if (!in->ReadString(&s, static_cast<int>(len))) return OkStatus();
      const size_t bad = FindInvalidUtf8(s);
      if (bad != std::string_view::npos) {
        return InvalidArgumentError(name + ": invalid UTF-8 at byte " + std::to_string(bad));
      }
    } else {
      const auto limit = in->PushLimit(static_cast<int>(len));
      SLIM_RETURN_IF_ERROR(Walk(in, f->message_type(), name, depth + 1));
      in->PopLimit(limit);
    }
  }
}

}  // namespace

size_t FindInvalidUtf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len = 0;
    uint32_t cp = 0, min = 0;
    if ((c & 0xE0) == 0xC0) {
      len = 2, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3, cp = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4, cp = c & 0x07, min = 0x10000;
    } else {
      return i;
    }
    if (i + len > n) return i;
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += len;
  }
  return std::string_view::npos;
}

Status CheckUtf8Fields(std::string_view wire, const Descriptor* descriptor) {
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(wire.data()),
                                            static_cast<int>(wire.size()));
  return Walk(&in, descriptor, "", 0);
}

Status ParseRequest(const grpc::ByteBuffer& buffer, google::protobuf::Message* message) {
  std::vector<grpc::Slice> slices;
  if (!buffer.Dump(&slices).ok()) return InvalidArgumentError("request could not be read");
  std::string wire;
  wire.reserve(buffer.Length());
  for (const grpc::Slice& s : slices) wire.append(reinterpret_cast<const char*>(s.begin()), s.size());
  // UTF-8 first: protobuf would only log the field name and fail the whole parse.
  SLIM_RETURN_IF_ERROR(CheckUtf8Fields(wire, message->GetDescriptor()));
  if (!message->ParseFromString(wire)) {
    return InvalidArgumentError("request is not a valid " + message->GetDescriptor()->full_name() + " message");
  }
  return OkStatus();
}

grpc::ByteBuffer SerializeToBuffer(const google::protobuf::Message& message) {
  const std::string bytes = message.SerializeAsString();
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

}  // namespace slim::server
