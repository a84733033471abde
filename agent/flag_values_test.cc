#include "agent/flag_values.h"

#include "gtest/gtest.h"

namespace hearth::agent {
namespace {

TEST(ParseSocketMode, Accepted) {
  EXPECT_EQ(*ParseSocketMode("0660"), 0660u);
  EXPECT_EQ(*ParseSocketMode("600"), 0600u);
  EXPECT_EQ(*ParseSocketMode("0770"), 0770u);
}

TEST(ParseSocketMode, Refused) {
  for (const char* bad :
       {"", "-1", "999", "abc", "0666", "0777", "4660", "07777", "00660", "0400", "66O"}) {
    absl::StatusOr<mode_t> mode = ParseSocketMode(bad);
    EXPECT_FALSE(mode.ok()) << bad;
    EXPECT_EQ(mode.status().message().rfind("--socket_mode: ", 0), 0u) << mode.status();
  }
  EXPECT_EQ(ParseSocketMode("0666").status().message(),
            "--socket_mode: \"0666\" gives other users access (the socket controls every VM as "
            "root; at most 0770)");
}

}  // namespace
}  // namespace hearth::agent
