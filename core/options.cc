#include "core/options.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/room_name.h"

namespace roomcast::core {
namespace {

absl::Status ParseField(absl::string_view key, absl::string_view value, NamespaceOptions& ns) {
  bool flag = false;
  if (key == "history_size") {
    uint64_t n = 0;
    if (!absl::SimpleAtoi(value, &n)) {
      return absl::InvalidArgumentError(absl::StrCat("history_size: not a number: ", value));
    }
    ns.history_size = n;
  } else if (key == "history_ttl") {
    if (!absl::ParseDuration(value, &ns.history_ttl) || ns.history_ttl < absl::ZeroDuration()) {
      return absl::InvalidArgumentError(absl::StrCat("history_ttl: not a duration: ", value));
    }
  } else if (key == "presence" || key == "join_leave" || key == "client_publish") {
    if (!absl::SimpleAtob(value, &flag)) {
      return absl::InvalidArgumentError(absl::StrCat(key, ": not a boolean: ", value));
    }
    (key == "presence"     ? ns.presence
     : key == "join_leave" ? ns.join_leave
                           : ns.client_publish) = flag;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("unknown namespace option: ", key));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<absl::flat_hash_map<std::string, NamespaceOptions>> ParseNamespaces(
    absl::string_view spec, const NamespaceOptions& base) {
  absl::flat_hash_map<std::string, NamespaceOptions> out;
  for (absl::string_view def : absl::StrSplit(spec, ';', absl::SkipWhitespace())) {
    def = absl::StripAsciiWhitespace(def);
    std::vector<absl::string_view> name_and_fields = absl::StrSplit(def, absl::MaxSplits(':', 1));
    absl::string_view name = name_and_fields[0];
    if (!IsValidNamespace(name)) {
      return absl::InvalidArgumentError(absl::StrCat("invalid namespace name: \"", name, "\""));
    }
    NamespaceOptions ns = base;
    if (name_and_fields.size() == 2) {
      for (absl::string_view field :
           absl::StrSplit(name_and_fields[1], ',', absl::SkipWhitespace())) {
        std::pair<absl::string_view, absl::string_view> kv =
            absl::StrSplit(field, absl::MaxSplits('=', 1));
        if (absl::Status s = ParseField(absl::StripAsciiWhitespace(kv.first),
                                        absl::StripAsciiWhitespace(kv.second), ns);
            !s.ok()) {
          return absl::InvalidArgumentError(absl::StrCat("namespace ", name, ": ", s.message()));
        }
      }
    }
    if (!out.emplace(std::string(name), ns).second) {
      return absl::InvalidArgumentError(absl::StrCat("namespace defined twice: ", name));
    }
  }
  return out;
}

}  // namespace roomcast::core
