#include "agent/flag_values.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace hearth::agent {

absl::StatusOr<mode_t> ParseSocketMode(absl::string_view text) {
  auto invalid = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("--socket_mode: \"", absl::CHexEscape(text.substr(0, 16)), "\" ", why));
  };
  if (text.empty() || text.size() > 4) return invalid("is not 1 to 4 octal digits");
  mode_t mode = 0;
  for (char c : text) {
    if (c < '0' || c > '7') return invalid("is not 1 to 4 octal digits");
    mode = mode * 8 + static_cast<mode_t>(c - '0');
  }
  if (mode > 0777) return invalid("sets setuid, setgid or sticky bits");
  if ((mode & 0007) != 0) {
    return invalid("gives other users access (the socket controls every VM as root; at most 0770)");
  }
  if ((mode & 0600) != 0600) return invalid("must let the owner read and write (at least 0600)");
  return mode;
}

}  // namespace hearth::agent
