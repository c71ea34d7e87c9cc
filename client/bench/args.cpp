// Args: parsing and typed getters.
#include "client/bench/args.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <sstream>

namespace slim::bench {

StatusOr<Args> Args::Parse(int argc, char** argv, int first, const std::set<std::string>& known,
                           const std::set<std::string>& booleans) {
  Args a;
  for (int i = first; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--", 0) != 0) return InvalidArgumentError("unexpected argument '" + arg + "'");
    std::string name = arg.substr(2), value;
    const size_t eq = name.find('=');
    const bool has_eq = eq != std::string::npos;
    if (has_eq) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    if (!known.count(name) && !booleans.count(name)) return InvalidArgumentError("unknown flag --" + name);
    if (booleans.count(name)) {
      if (has_eq) return InvalidArgumentError("--" + name + " takes no value");
      a.values_[name] = "1";
      continue;
    }
    if (!has_eq) {
      if (i + 1 >= argc) return InvalidArgumentError("--" + name + " needs a value");
      value = argv[++i];
    }
    a.values_[name] = value;
  }
  return a;
}

std::string Args::Str(const std::string& name, const std::string& def) const {
  auto it = values_.find(name);
  return it == values_.end() ? def : it->second;
}

StatusOr<int64_t> Args::Int(const std::string& name, int64_t def, int64_t lo, int64_t hi) const {
  auto it = values_.find(name);
  if (it == values_.end()) return def;
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(it->second.c_str(), &end, 10);
  if (errno != 0 || end == it->second.c_str() || *end != '\0') {
    return InvalidArgumentError("--" + name + ": '" + it->second + "' is not an integer");
  }
  if (v < lo || v > hi) {
    return InvalidArgumentError("--" + name + " must be in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                                "], got " + it->second);
  }
  return static_cast<int64_t>(v);
}

StatusOr<double> Args::Float(const std::string& name, double def, double lo, double hi) const {
  auto it = values_.find(name);
  if (it == values_.end()) return def;
  char* end = nullptr;
  const double v = std::strtod(it->second.c_str(), &end);
  if (end == it->second.c_str() || *end != '\0' || !std::isfinite(v)) {
    return InvalidArgumentError("--" + name + ": '" + it->second + "' is not a number");
  }
  if (v < lo || v > hi) {
    std::ostringstream os;
    os << "--" << name << " must be in [" << lo << ", " << hi << "], got " << it->second;
    return InvalidArgumentError(os.str());
  }
  return v;
}

std::vector<std::string> Args::StrList(const std::string& name, const std::string& def) const {
  std::vector<std::string> out;
  std::stringstream ss(Str(name, def));
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

StatusOr<std::vector<int64_t>> Args::IntList(const std::string& name, const std::string& def) const {
  std::vector<int64_t> out;
  for (const std::string& s : StrList(name, def)) {
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(s.c_str(), &end, 10);
    if (errno != 0 || *end != '\0' || v <= 0) {
      return InvalidArgumentError("--" + name + ": '" + s + "' is not a positive integer");
    }
    out.push_back(v);
  }
  if (out.empty()) return InvalidArgumentError("--" + name + " is empty");
  return out;
}

}  // namespace slim::bench
