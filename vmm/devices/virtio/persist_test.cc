// The transport's snapshot state through the snapshot format: every field
// of a VirtioState survives the conversion both ways, and a device with
// no state of its own (rng) saves none.
#include "vmm/devices/virtio/persist.h"

#include <memory>

#include "common/event_loop.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "hearth/vmm/v1/snapshot.pb.h"
#include "vmm/devices/virtio/rng/rng.h"
#include "vmm/devices/virtio/testing/fake_guest.h"

namespace hearth::virtio {
namespace {

namespace v1 = ::hearth::vmm::v1;
using ::google::protobuf::util::MessageDifferencer;
using testing::FakeDriver;
using testing::FakeGuest;
using testing::FakeQueue;

// A state with every transport field set to something other than its
// default.
VirtioState Transport() {
  VirtioState state;
  state.device_type = kDeviceNet;
  state.status = 0x0f;
  state.driver_features = kFeatureVersion1 | kFeatureEventIdx;
  state.device_features_sel = 1;
  state.driver_features_sel = 1;
  state.queue_sel = 1;
  state.interrupt_status = VirtioInterrupt::kUsedBuffer;
  state.activated = true;
  state.queues.push_back(QueueState{16, true, 0x1000, 0x2000, 0x3000, 7, 5, false});
  state.queues.push_back(QueueState{0x10000, false, 1, 2, 3, 0x10000, 0x10001, true});
  return state;
}

TEST(VirtioPersistTest, EveryFieldSurvivesTheFormat) {
  for (DeviceState device : {DeviceState{}, DeviceState{BlockState{128}}, DeviceState{NetState{}},
                             DeviceState{NetState{NetState::PendingRx{3, 70}}},
                             DeviceState{BalloonState{1536, 512, 60, 2, {{0, 11}, {4, 4096}}}}}) {
    VirtioState state = Transport();
    state.device = device;
    v1::VirtioState proto;
    VirtioStateToProto(state, &proto);
    EXPECT_EQ(VirtioStateFromProto(proto), state) << proto.DebugString();
    v1::VirtioState again;
    VirtioStateToProto(VirtioStateFromProto(proto), &again);
    EXPECT_TRUE(MessageDifferencer::Equals(again, proto)) << again.DebugString();
  }
}

TEST(VirtioPersistTest, DeviceStateIsSetExactlyWhenTheDeviceSavedSome) {
  v1::VirtioState proto;
  VirtioStateToProto(Transport(), &proto);
  EXPECT_EQ(proto.device_case(), v1::VirtioState::DEVICE_NOT_SET);
  VirtioState net = Transport();
  net.device = NetState{};
  VirtioStateToProto(net, &proto);
  EXPECT_EQ(proto.device_case(), v1::VirtioState::kNet);
  EXPECT_FALSE(proto.net().has_pending_rx());
}

TEST(VirtioPersistTest, SavedTransportRestoresIntoAFreshOneUnchanged) {
  FakeGuest guest;
  FakeQueue* queue = guest.AddQueue(16);
  std::unique_ptr<EventLoop> loop = *EventLoop::Create();
  auto rng = std::make_shared<Rng>(*vmm::RateLimiter::Create({}));
  auto driver = std::make_unique<FakeDriver>(rng, &guest, loop.get());
  driver->Initialize(kFeatureVersion1, {queue});
  queue->AddChain({guest.Writable(8)});
  driver->Kick(0);
  ASSERT_EQ(queue->TakeUsed().size(), 1u);

  v1::VirtioState saved;
  ASSERT_TRUE(SaveVirtioState(*driver->transport(), &saved).ok());
  EXPECT_EQ(saved.device_type(), kDeviceRng);
  EXPECT_TRUE(saved.activated());
  ASSERT_EQ(saved.queues_size(), 1);
  EXPECT_EQ(saved.queues(0).size(), 16u);
  EXPECT_EQ(saved.queues(0).next_avail(), 1u);
  EXPECT_EQ(saved.queues(0).next_used(), 1u);
  EXPECT_EQ(saved.device_case(), v1::VirtioState::DEVICE_NOT_SET);

  driver.reset();
  rng = std::make_shared<Rng>(*vmm::RateLimiter::Create({}));
  driver = std::make_unique<FakeDriver>(rng, &guest, loop.get());
  absl::Status restored = RestoreVirtioState(saved, driver->transport());
  ASSERT_TRUE(restored.ok()) << restored;
  v1::VirtioState again;
  ASSERT_TRUE(SaveVirtioState(*driver->transport(), &again).ok());
  EXPECT_EQ(again.SerializeAsString(), saved.SerializeAsString());
}

}  // namespace
}  // namespace hearth::virtio
