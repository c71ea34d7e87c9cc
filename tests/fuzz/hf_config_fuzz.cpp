// libFuzzer target for ConfigFromHfJson (config.json of a Hugging Face checkpoint). Besides
// crashes and sanitizer reports it traps on broken invariants: an error that is not an
// InvalidArgument naming the file, or an accepted config that ModelConfig::Validate refuses.
// Seeds: tests/fuzz/hf_config_seeds (the configs of tests/fixtures/hf and of the SmolLM2
// checkpoint scripts/make-hf-smollm2.py writes).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "engine/model/hf_config.h"

namespace {

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace slim;
  auto c = ConfigFromHfJson(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz/config.json");
  if (!c.ok()) {
    Check(c.status().code() == StatusCode::kInvalidArgument && c.status().message().rfind("fuzz/config.json: ", 0) == 0);
    return 0;
  }
  Check(c->Validate().ok());
  Check(c->rope_neox && c->sliding_window >= 0);
  return 0;
}
