// Minimal command-line flags for sliminfer-bench (which must build without abseil on the GPU
// machine): --name value / --name=value / boolean --name, with typed, range-checked getters.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "engine/core/status.h"

namespace slim::bench {

class Args {
 public:
  // argv[first..] are flags; `booleans` take no value.
  static StatusOr<Args> Parse(int argc, char** argv, int first, const std::set<std::string>& known,
                              const std::set<std::string>& booleans);
  bool Has(const std::string& name) const { return values_.count(name) != 0; }
  std::string Str(const std::string& name, const std::string& def = "") const;
  StatusOr<int64_t> Int(const std::string& name, int64_t def, int64_t lo, int64_t hi) const;
  StatusOr<double> Float(const std::string& name, double def, double lo, double hi) const;
  StatusOr<std::vector<int64_t>> IntList(const std::string& name, const std::string& def) const;
  std::vector<std::string> StrList(const std::string& name, const std::string& def) const;
  bool Flag(const std::string& name) const { return Has(name); }

 private:
  std::map<std::string, std::string> values_;
};

}  // namespace slim::bench
