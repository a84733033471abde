#include "agent/field_limits.h"

#include <string>

#include "gtest/gtest.h"
#include "hearth/v1/hearth.pb.h"

namespace hearth::agent {
namespace {

namespace api = ::hearth::v1;

TEST(CheckFieldSizes, NamesTheFieldAndNeverEchoesIt) {
  api::CreateVmRequest request;
  request.set_vm_id("vm1");
  api::Drive* drive = request.mutable_config()->add_drives();
  drive->set_drive_id("root");
  EXPECT_TRUE(CheckFieldSizes(request).ok());
  drive->set_partuuid(std::string(1 << 20, 'p'));
  absl::Status status = CheckFieldSizes(request);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "config.drives[0].partuuid: 1048576 bytes, at most 4096");
  drive->set_partuuid(std::string(kMaxFieldBytes, 'p'));
  EXPECT_TRUE(CheckFieldSizes(request).ok());
}

TEST(CheckFieldSizes, MapsAndRepeatedFields) {
  api::CreateVmRequest request;
  (*request.mutable_labels())["k"] = std::string(5000, 'v');
  EXPECT_NE(CheckFieldSizes(request).message().find("labels[0].value: 5000 bytes"),
            absl::string_view::npos);
  request.clear_labels();
  for (int i = 0; i <= kMaxRepeated; ++i) request.mutable_config()->add_drives();
  EXPECT_EQ(CheckFieldSizes(request).message(), "config.drives: 257 entries, at most 256");
  api::PutVsockRequest vsock;
  vsock.mutable_vsock()->set_vsock_id(std::string(10000, 'x'));
  EXPECT_EQ(CheckFieldSizes(vsock).message(), "vsock.vsock_id: 10000 bytes, at most 4096");
}

TEST(TruncateMessage, CutsLongMessagesOnACharacter) {
  EXPECT_EQ(TruncateMessage("short"), "short");
  std::string long_message(kMaxErrorMessage - 1, 'a');
  long_message += "\xc3\xa9" + std::string(100, 'b');  // an é across the limit
  std::string cut = TruncateMessage(long_message);
  EXPECT_EQ(cut.substr(0, kMaxErrorMessage - 1), std::string(kMaxErrorMessage - 1, 'a'));
  EXPECT_EQ(cut.substr(kMaxErrorMessage - 1), "... (102 more bytes)");
}

}  // namespace
}  // namespace hearth::agent
