// virtio-balloon's snapshot state through the snapshot format: a device's
// saved state restored into a fresh device saves the same again.
#include "vmm/devices/virtio/balloon/persist.h"

#include <cstring>
#include <memory>
#include <string>

#include "common/event_loop.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "hearth/vmm/v1/snapshot.pb.h"
#include "vmm/devices/virtio/balloon/balloon.h"
#include "vmm/devices/virtio/persist.h"
#include "vmm/devices/virtio/testing/fake_guest.h"

namespace hearth::virtio {
namespace {

namespace v1 = ::hearth::vmm::v1;
using ::google::protobuf::util::MessageDifferencer;
using testing::FakeDriver;
using testing::FakeGuest;
using testing::FakeQueue;

// One virtio_balloon_stat: u16 tag, u64 value, packed.
std::string Stat(uint16_t tag, uint64_t value) {
  std::string bytes(10, '\0');
  std::memcpy(bytes.data(), &tag, 2);
  std::memcpy(bytes.data() + 2, &value, 8);
  return bytes;
}

TEST(BalloonPersistTest, EveryFieldMapsToItsOwn) {
  v1::BalloonState proto;
  BalloonStateToProto(BalloonState{1536, 512, 60, 2, {{0, 11}, {4, 4096}}}, &proto);
  EXPECT_EQ(proto.num_pages(), 1536u);
  EXPECT_EQ(proto.actual(), 512u);
  EXPECT_EQ(proto.stats_polling_interval_s(), 60u);
  EXPECT_TRUE(proto.has_stats_head());
  EXPECT_EQ(proto.stats_head(), 2u);
  ASSERT_EQ(proto.stats_size(), 2);
  EXPECT_EQ(proto.stats().at(4), 4096u);
  EXPECT_EQ(BalloonStateFromProto(proto), (BalloonState{1536, 512, 60, 2, {{0, 11}, {4, 4096}}}));
}

TEST(BalloonPersistTest, SavedStateRestoresIntoAFreshDeviceUnchanged) {
  FakeGuest guest;
  FakeQueue* inflate = guest.AddQueue(16);
  FakeQueue* deflate = guest.AddQueue(16);
  FakeQueue* stats = guest.AddQueue(16);
  std::unique_ptr<EventLoop> loop = *EventLoop::Create();
  std::shared_ptr<Balloon> balloon = *Balloon::Create(4, /*deflate_on_oom=*/true, 60);
  auto driver = std::make_unique<FakeDriver>(balloon, &guest, loop.get());
  driver->Initialize(kFeatureVersion1 | kBalloonFStatsVq, {inflate, deflate, stats});
  balloon->SetTarget(6);
  driver->Write(kMmioConfig + 4, 512);  // the driver's `actual`
  uint16_t head = stats->AddChain({guest.Readable(Stat(0, 11) + Stat(4, 4096))});
  driver->Kick(Balloon::kStatsQueue);

  v1::VirtioState saved;
  ASSERT_TRUE(SaveVirtioState(*driver->transport(), &saved).ok());
  ASSERT_TRUE(saved.has_balloon());
  EXPECT_EQ(saved.balloon().num_pages(), 6u * 256);
  EXPECT_EQ(saved.balloon().actual(), 512u);
  EXPECT_EQ(saved.balloon().stats_head(), head);
  EXPECT_EQ(saved.balloon().stats_size(), 2);

  driver.reset();
  balloon = *Balloon::Create(4, /*deflate_on_oom=*/true, 60);
  driver = std::make_unique<FakeDriver>(balloon, &guest, loop.get());
  absl::Status restored = RestoreVirtioState(saved, driver->transport());
  ASSERT_TRUE(restored.ok()) << restored;
  v1::VirtioState again;
  ASSERT_TRUE(SaveVirtioState(*driver->transport(), &again).ok());
  // (Compared as messages: a map's serialized order is not fixed.)
  EXPECT_TRUE(MessageDifferencer::Equals(again, saved)) << again.DebugString();
}

}  // namespace
}  // namespace hearth::virtio
