#include "vmm/devices/virtio/mmio_transport.h"

#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "vmm/devices/virtio/testing/fake_guest.h"

namespace hearth::virtio {
namespace {

using testing::FakeGuest;
using testing::FakeQueue;
using testing::UsedElement;

constexpr uint64_t kFeatureBit0 = 1;  // a device-specific feature
constexpr uint64_t kOffered =
    kFeatureVersion1 | kFeatureEventIdx | kFeatureIndirectDesc | kFeatureBit0;
constexpr uint32_t kDeviceType = 42;

// Records what the transport asks of it. With `complete_requests` it also
// completes every chain it finds (used length: the chain's writable bytes),
// on activation and on kicks, as a real device does.
class FakeDevice : public VirtioDevice {
 public:
  uint32_t device_type() const override { return kDeviceType; }
  uint64_t features() const override { return kOffered; }
  std::vector<uint16_t> queue_max_sizes() const override { return {16, 8}; }
  std::string name() const override { return "fake"; }
  void ReadConfig(uint64_t offset, absl::Span<uint8_t> data) override {
    ReadConfigBytes(config, offset, data);
  }
  void WriteConfig(uint64_t offset, absl::Span<const uint8_t> data) override {
    if (offset + data.size() <= sizeof(config)) {
      std::memcpy(config + offset, data.data(), data.size());
    }
  }
  uint32_t config_generation() const override { return generation; }
  absl::Status Activate(ActivateContext context) override {
    ++activations;
    calls.push_back("Activate");
    if (!activate_result.ok()) return activate_result;
    active = std::move(context);
    for (size_t i = 0; i < active->queues.size(); ++i) Complete(i);
    return absl::OkStatus();
  }
  void ProcessQueue(size_t index) override {
    processed.push_back(index);
    Complete(index);
  }
  void Reset() override {
    ++resets;
    active.reset();
  }
  const ActivateContext* activated() const override {
    return snapshottable && active.has_value() ? &*active : nullptr;
  }
  absl::Status RestoreState(const VirtioState&) override {
    calls.push_back("RestoreState");
    return absl::OkStatus();
  }
  void Restored() override { calls.push_back("Restored"); }

  uint8_t config[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  uint32_t generation = 7;
  absl::Status activate_result;
  bool complete_requests = false;
  bool snapshottable = true;
  int activations = 0;
  int resets = 0;
  std::optional<ActivateContext> active;
  std::vector<size_t> processed;
  // RestoreState, Activate and Restored, in the order they came.
  std::vector<std::string> calls;
  DeviceMetrics metrics;

 private:
  void Complete(size_t index) {
    if (!complete_requests || !active.has_value() || index >= active->queues.size() ||
        !active->queues[index].has_value()) {
      return;
    }
    Queue& queue = *active->queues[index];
    bool used = false;
    while (std::optional<DescriptorChain> chain = NextChain(&*active, index, &metrics, &used)) {
      queue.AddUsed(chain->head, static_cast<uint32_t>(chain->writable_bytes));
      used = true;
    }
    if (used) SignalUsed(&*active, &queue, &metrics);
  }
};

class MmioTransportTest : public ::testing::Test {
 protected:
  MmioTransportTest() {
    auto line = std::make_unique<devices::CountingInterrupt>();
    interrupt_line = line.get();
    transport =
        std::make_unique<MmioTransport>(device, guest.memory(), loop.get(), std::move(line));
  }

  static uint32_t ReadFrom(MmioTransport* to, uint64_t offset) {
    uint32_t value = 0xdeadbeef;
    to->Read(offset, absl::MakeSpan(reinterpret_cast<uint8_t*>(&value), 4));
    return value;
  }
  static void WriteTo(MmioTransport* to, uint64_t offset, uint32_t value) {
    to->Write(offset, absl::MakeConstSpan(reinterpret_cast<uint8_t*>(&value), 4));
  }
  uint32_t Read(uint64_t offset) { return ReadFrom(transport.get(), offset); }
  void Write(uint64_t offset, uint32_t value) { WriteTo(transport.get(), offset, value); }
  void RunLoop() { ASSERT_TRUE(loop->RunOnce(0).ok()); }

  // Sets status bits the way a driver does: read, OR, write.
  void AddStatus(uint32_t bits) { Write(kMmioStatus, Read(kMmioStatus) | bits); }
  // ACKNOWLEDGE | DRIVER, driver features, FEATURES_OK (virtio 1.2 §3.1.1).
  void Negotiate(uint64_t features) {
    AddStatus(kStatusAcknowledge);
    AddStatus(kStatusDriver);
    Write(kMmioDriverFeaturesSel, 0);
    Write(kMmioDriverFeatures, static_cast<uint32_t>(features));
    Write(kMmioDriverFeaturesSel, 1);
    Write(kMmioDriverFeatures, static_cast<uint32_t>(features >> 32));
    AddStatus(kStatusFeaturesOk);
  }
  void SetUpQueue(uint32_t index, const FakeQueue& queue) {
    Write(kMmioQueueSel, index);
    Write(kMmioQueueNum, queue.size());
    Write(kMmioQueueDescLow, static_cast<uint32_t>(queue.desc_table()));
    Write(kMmioQueueDescHigh, static_cast<uint32_t>(queue.desc_table() >> 32));
    Write(kMmioQueueDriverLow, static_cast<uint32_t>(queue.avail_ring()));
    Write(kMmioQueueDriverHigh, static_cast<uint32_t>(queue.avail_ring() >> 32));
    Write(kMmioQueueDeviceLow, static_cast<uint32_t>(queue.used_ring()));
    Write(kMmioQueueDeviceHigh, static_cast<uint32_t>(queue.used_ring() >> 32));
    Write(kMmioQueueReady, 1);
  }
  void DriverOk() {
    Write(kMmioStatus, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  }
  // The whole initialisation with queue 0 only; runs the posted activation.
  void Activate() {
    Negotiate(kOffered);
    SetUpQueue(0, *queue0);
    DriverOk();
    RunLoop();
    ASSERT_TRUE(device->active.has_value());
  }

  FakeGuest guest;
  FakeQueue* queue0 = guest.AddQueue(16);
  std::unique_ptr<EventLoop> loop = *EventLoop::Create();
  std::shared_ptr<FakeDevice> device = std::make_shared<FakeDevice>();
  devices::CountingInterrupt* interrupt_line;
  std::unique_ptr<MmioTransport> transport;
};

TEST_F(MmioTransportTest, IdentityRegisters) {
  EXPECT_EQ(Read(kMmioMagicValue), 0x74726976u);  // "virt"
  EXPECT_EQ(Read(kMmioVersion), 2u);
  EXPECT_EQ(Read(kMmioDeviceId), kDeviceType);
  EXPECT_EQ(Read(kMmioVendorId), kVendorId);
  EXPECT_EQ(Read(kMmioStatus), 0u);
  EXPECT_EQ(Read(kMmioConfigGeneration), 7u);
  EXPECT_EQ(transport->queue_count(), 2u);
  EXPECT_EQ(transport->metrics().bad_register_accesses, 0u);
}

TEST_F(MmioTransportTest, DeviceFeaturesAreReadIn32BitWindows) {
  Write(kMmioDeviceFeaturesSel, 0);
  EXPECT_EQ(Read(kMmioDeviceFeatures), static_cast<uint32_t>(kOffered));
  Write(kMmioDeviceFeaturesSel, 1);
  EXPECT_EQ(Read(kMmioDeviceFeatures), static_cast<uint32_t>(kOffered >> 32));
  EXPECT_EQ(Read(kMmioDeviceFeatures), 1u);  // VERSION_1 is bit 32
  Write(kMmioDeviceFeaturesSel, 2);
  EXPECT_EQ(Read(kMmioDeviceFeatures), 0u);
  Write(kMmioDeviceFeaturesSel, 0xffffffff);
  EXPECT_EQ(Read(kMmioDeviceFeatures), 0u);
}

TEST_F(MmioTransportTest, AcceptedFeaturesReachTheDevice) {
  Negotiate(kFeatureVersion1 | kFeatureBit0);
  EXPECT_EQ(Read(kMmioStatus), kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
  SetUpQueue(0, *queue0);
  DriverOk();
  RunLoop();
  ASSERT_TRUE(device->active.has_value());
  EXPECT_EQ(device->active->acked_features, kFeatureVersion1 | kFeatureBit0);
  EXPECT_EQ(transport->metrics().rejected_features, 0u);
}

TEST_F(MmioTransportTest, FeaturesOkIsRefusedWithoutVersion1) {
  Negotiate(kFeatureBit0 | kFeatureEventIdx);
  EXPECT_EQ(Read(kMmioStatus), kStatusAcknowledge | kStatusDriver);
  EXPECT_EQ(transport->metrics().rejected_features, 1u);
}

TEST_F(MmioTransportTest, FeaturesOkIsRefusedWithUnofferedBits) {
  Negotiate(kFeatureVersion1 | (1ull << 5));
  EXPECT_EQ(Read(kMmioStatus) & kStatusFeaturesOk, 0u);
  Write(kMmioDriverFeaturesSel, 1);
  Negotiate(kFeatureVersion1 | (1ull << 40));
  EXPECT_EQ(Read(kMmioStatus) & kStatusFeaturesOk, 0u);
  EXPECT_EQ(transport->metrics().rejected_features, 2u);
  // The driver may try again with a subset.
  Negotiate(kFeatureVersion1);
  EXPECT_NE(Read(kMmioStatus) & kStatusFeaturesOk, 0u);
}

TEST_F(MmioTransportTest, DriverFeaturesNeedDriverStatusAndAreFrozenAtFeaturesOk) {
  // Before DRIVER: ignored.
  Write(kMmioDriverFeaturesSel, 1);
  Write(kMmioDriverFeatures, 1);
  EXPECT_EQ(transport->metrics().bad_register_accesses, 1u);
  Write(kMmioStatus, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
  EXPECT_EQ(Read(kMmioStatus) & kStatusFeaturesOk, 0u);

  Negotiate(kFeatureVersion1);
  // After FEATURES_OK the features cannot change (counted, ignored).
  Write(kMmioDriverFeaturesSel, 0);
  Write(kMmioDriverFeatures, static_cast<uint32_t>(kFeatureBit0));
  EXPECT_EQ(transport->metrics().bad_register_accesses, 2u);
  // Selector beyond the two windows: ignored.
  Write(kMmioDriverFeaturesSel, 2);
  SetUpQueue(0, *queue0);
  DriverOk();
  RunLoop();
  ASSERT_TRUE(device->active.has_value());
  EXPECT_EQ(device->active->acked_features, kFeatureVersion1);
}

TEST_F(MmioTransportTest, DriverOkWithoutFeaturesOkIsIgnored) {
  Write(kMmioStatus, kStatusAcknowledge | kStatusDriver);
  SetUpQueue(0, *queue0);  // ignored too: not between FEATURES_OK and DRIVER_OK
  Write(kMmioStatus, kStatusAcknowledge | kStatusDriver | kStatusDriverOk);
  EXPECT_EQ(Read(kMmioStatus), kStatusAcknowledge | kStatusDriver);
  RunLoop();
  EXPECT_EQ(device->activations, 0);
}

TEST_F(MmioTransportTest, QueueRegistersAreOnlyWritableBetweenFeaturesOkAndDriverOk) {
  Write(kMmioQueueSel, 0);
  EXPECT_EQ(Read(kMmioQueueNumMax), 16u);
  Write(kMmioQueueSel, 1);
  EXPECT_EQ(Read(kMmioQueueNumMax), 8u);
  Write(kMmioQueueSel, 2);
  EXPECT_EQ(Read(kMmioQueueNumMax), 0u);  // no such queue
  EXPECT_EQ(Read(kMmioQueueReady), 0u);

  // Before FEATURES_OK: every queue register write is refused.
  const uint64_t queue_registers[] = {
      kMmioQueueNum,       kMmioQueueReady,      kMmioQueueDescLow,   kMmioQueueDescHigh,
      kMmioQueueDriverLow, kMmioQueueDriverHigh, kMmioQueueDeviceLow, kMmioQueueDeviceHigh};
  Write(kMmioQueueSel, 0);
  uint64_t before = transport->metrics().bad_register_accesses;
  for (uint64_t r : queue_registers) Write(r, 1);
  EXPECT_EQ(transport->metrics().bad_register_accesses, before + 8);
  EXPECT_EQ(Read(kMmioQueueReady), 0u);

  // Between FEATURES_OK and DRIVER_OK: accepted.
  Negotiate(kOffered);
  before = transport->metrics().bad_register_accesses;
  SetUpQueue(0, *queue0);
  EXPECT_EQ(transport->metrics().bad_register_accesses, before);
  EXPECT_EQ(Read(kMmioQueueReady), 1u);
  // A ready queue's size and addresses are locked; ready itself may drop.
  Write(kMmioQueueNum, 4);
  EXPECT_EQ(transport->metrics().bad_register_accesses, before + 1);

  DriverOk();
  RunLoop();
  ASSERT_TRUE(device->active.has_value());
  EXPECT_EQ(device->active->queues[0]->size(), 16);
  // After DRIVER_OK: refused again.
  before = transport->metrics().bad_register_accesses;
  Write(kMmioQueueSel, 1);
  for (uint64_t r : queue_registers) Write(r, 1);
  EXPECT_EQ(transport->metrics().bad_register_accesses, before + 8);
  EXPECT_EQ(Read(kMmioQueueReady), 0u);
}

TEST_F(MmioTransportTest, ActivationIsPostedToTheLoopWithTheConfiguredQueues) {
  Negotiate(kOffered);
  // A smaller queue than the maximum, on queue 0; queue 1 left unset.
  FakeQueue* small = guest.AddQueue(4);
  SetUpQueue(0, *small);
  uint16_t head = small->AddChain({guest.Writable(32)});
  DriverOk();
  EXPECT_EQ(Read(kMmioStatus) & kStatusDriverOk, kStatusDriverOk);
  EXPECT_EQ(device->activations, 0);  // not on the vCPU thread
  RunLoop();
  ASSERT_EQ(device->activations, 1);
  ASSERT_TRUE(device->active.has_value());
  ActivateContext& context = *device->active;
  ASSERT_EQ(context.queues.size(), 2u);
  ASSERT_TRUE(context.queues[0].has_value());
  EXPECT_FALSE(context.queues[1].has_value());
  EXPECT_EQ(context.queues[0]->size(), 4);
  EXPECT_EQ(context.memory, guest.memory());
  EXPECT_EQ(context.event_loop, loop.get());
  EXPECT_EQ(context.acked_features, kOffered);
  // The queue the device got reads the driver's rings.
  Queue::PopResult popped = context.queues[0]->Pop();
  ASSERT_TRUE(popped.chain.has_value());
  EXPECT_EQ(popped.chain->head, head);
  EXPECT_EQ(popped.chain->writable_bytes, 32u);
  // EVENT_IDX was negotiated: the queue writes avail_event.
  EXPECT_EQ(small->avail_event(), 1);
}

TEST_F(MmioTransportTest, InvalidRingsSetNeedsResetAndDoNotActivate) {
  Negotiate(kOffered);
  SetUpQueue(0, *queue0);
  Write(kMmioQueueSel, 1);
  Write(kMmioQueueNum, 3);  // not a power of two
  Write(kMmioQueueReady, 1);
  DriverOk();
  EXPECT_NE(Read(kMmioStatus) & kStatusNeedsReset, 0u);
  EXPECT_EQ(Read(kMmioInterruptStatus), VirtioInterrupt::kConfigChange);
  EXPECT_EQ(interrupt_line->count(), 1u);
  EXPECT_EQ(transport->metrics().activation_failures, 1u);
  RunLoop();
  EXPECT_EQ(device->activations, 0);
}

TEST_F(MmioTransportTest, RingAddressHighHalvesAreUsed) {
  Negotiate(kOffered);
  SetUpQueue(0, *queue0);
  Write(kMmioQueueReady, 0);
  Write(kMmioQueueDescHigh, 1);  // 4 GiB up: outside the 16 MiB of RAM
  Write(kMmioQueueReady, 1);
  DriverOk();
  EXPECT_NE(Read(kMmioStatus) & kStatusNeedsReset, 0u);
  RunLoop();
  EXPECT_EQ(device->activations, 0);
}

TEST_F(MmioTransportTest, FailedActivationSetsNeedsReset) {
  device->activate_result = absl::InternalError("backend gone");
  Negotiate(kOffered);
  SetUpQueue(0, *queue0);
  DriverOk();
  EXPECT_EQ(Read(kMmioStatus) & kStatusNeedsReset, 0u);
  RunLoop();
  EXPECT_EQ(device->activations, 1);
  EXPECT_NE(Read(kMmioStatus) & kStatusNeedsReset, 0u);
  EXPECT_EQ(Read(kMmioInterruptStatus), VirtioInterrupt::kConfigChange);
  EXPECT_EQ(transport->metrics().activation_failures, 1u);
  // Not active: kicks are not delivered.
  transport->Notify(0);
  EXPECT_TRUE(device->processed.empty());
}

TEST_F(MmioTransportTest, DeviceCanAskForAResetThroughItsContext) {
  Activate();
  device->active->needs_reset();
  EXPECT_NE(Read(kMmioStatus) & kStatusNeedsReset, 0u);
  EXPECT_EQ(Read(kMmioInterruptStatus), VirtioInterrupt::kConfigChange);
  // NEEDS_RESET survives the driver's further status writes.
  DriverOk();
  EXPECT_NE(Read(kMmioStatus) & kStatusNeedsReset, 0u);
}

TEST_F(MmioTransportTest, StatusBitsAreOnlyClearedByAReset) {
  Activate();
  const uint32_t running = Read(kMmioStatus);
  uint64_t before = transport->metrics().bad_register_accesses;
  // Back to FEATURES_OK (to rewrite the queues and activate again): refused.
  Write(kMmioStatus, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
  Write(kMmioStatus, kStatusAcknowledge | kStatusDriver);
  Write(kMmioStatus, kStatusAcknowledge);
  EXPECT_EQ(Read(kMmioStatus), running);
  EXPECT_EQ(transport->metrics().bad_register_accesses, before + 3);
  Write(kMmioQueueSel, 0);
  Write(kMmioQueueReady, 0);  // queues stay locked
  EXPECT_EQ(Read(kMmioQueueReady), 1u);
  DriverOk();
  RunLoop();
  EXPECT_EQ(device->activations, 1);
  // Adding FAILED is fine.
  Write(kMmioStatus, running | kStatusFailed);
  EXPECT_EQ(Read(kMmioStatus), running | kStatusFailed);
}

TEST_F(MmioTransportTest, ResetClearsStateAndResetsTheDeviceOnTheLoop) {
  Activate();
  device->active->interrupt->SignalUsedBuffer();
  EXPECT_EQ(Read(kMmioInterruptStatus), VirtioInterrupt::kUsedBuffer);
  Write(kMmioQueueSel, 1);
  Write(kMmioStatus, 0);
  EXPECT_EQ(Read(kMmioStatus), 0u);
  EXPECT_EQ(Read(kMmioInterruptStatus), 0u);
  EXPECT_EQ(Read(kMmioQueueReady), 0u);  // queue_sel back to 0, queue 0 unready
  EXPECT_EQ(device->resets, 0);          // not on the vCPU thread
  RunLoop();
  EXPECT_EQ(device->resets, 1);
  // Kicks after the reset are not delivered.
  transport->Notify(0);
  EXPECT_TRUE(device->processed.empty());
  EXPECT_EQ(transport->metrics().notifications_before_ready, 1u);

  // Features were forgotten: FEATURES_OK needs a fresh negotiation, and the
  // device can be brought up again.
  Write(kMmioStatus, kStatusAcknowledge | kStatusDriver);
  Write(kMmioStatus, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
  EXPECT_EQ(Read(kMmioStatus) & kStatusFeaturesOk, 0u);
  Write(kMmioStatus, 0);
  Activate();
  EXPECT_EQ(device->activations, 2);
}

TEST_F(MmioTransportTest, ResetBeforeTheDeviceWasActiveDoesNotResetIt) {
  Write(kMmioStatus, kStatusAcknowledge);
  Write(kMmioStatus, 0);
  RunLoop();
  EXPECT_EQ(device->resets, 0);
}

TEST_F(MmioTransportTest, StaleActivationPostedBeforeAResetIsDropped) {
  Negotiate(kOffered);
  SetUpQueue(0, *queue0);
  DriverOk();             // activation posted ...
  Write(kMmioStatus, 0);  // ... and the driver resets before it ran
  RunLoop();
  EXPECT_EQ(device->activations, 0);
  EXPECT_EQ(device->resets, 0);
  transport->Notify(0);
  EXPECT_TRUE(device->processed.empty());
}

TEST_F(MmioTransportTest, NonWordRegisterAccessesAreCountedAndIgnored) {
  uint8_t bytes[8];
  std::memset(bytes, 0xaa, sizeof(bytes));
  transport->Read(kMmioMagicValue, absl::MakeSpan(bytes, 2));
  EXPECT_EQ(bytes[0], 0);
  EXPECT_EQ(bytes[1], 0);
  transport->Read(kMmioMagicValue, absl::MakeSpan(bytes, 8));
  EXPECT_EQ(bytes[4], 0);
  transport->Read(kMmioMagicValue + 1, absl::MakeSpan(bytes, 4));  // misaligned
  EXPECT_EQ(bytes[0], 0);
  uint8_t status = kStatusAcknowledge;
  transport->Write(kMmioStatus, absl::MakeConstSpan(&status, 1));
  uint8_t wide[8] = {kStatusAcknowledge};
  transport->Write(kMmioStatus, absl::MakeConstSpan(wide, 8));
  transport->Write(kMmioStatus + 2, absl::MakeConstSpan(wide, 4));
  EXPECT_EQ(transport->metrics().bad_register_accesses, 6u);
  EXPECT_EQ(Read(kMmioStatus), 0u);
}

TEST_F(MmioTransportTest, UnknownRegistersAreCountedAndReadZero) {
  EXPECT_EQ(Read(0x0f0), 0u);
  EXPECT_EQ(Read(kMmioQueueDescLow), 0u);  // write-only
  Write(kMmioMagicValue, 1);               // read-only
  Write(0x0f8, 1);
  EXPECT_EQ(transport->metrics().bad_register_accesses, 4u);
}

TEST_F(MmioTransportTest, ConfigSpaceIsPassedThroughAtAnyWidth) {
  uint8_t two[2];
  transport->Read(kMmioConfig + 2, absl::MakeSpan(two, 2));
  EXPECT_EQ(two[0], 3);
  EXPECT_EQ(two[1], 4);
  uint8_t eight[8];
  transport->Read(kMmioConfig + 4, absl::MakeSpan(eight, 8));
  EXPECT_EQ(eight[3], 8);
  EXPECT_EQ(eight[4], 0);  // beyond the config space: zeros
  const uint8_t value[2] = {0x55, 0x66};
  transport->Write(kMmioConfig + 6, absl::MakeConstSpan(value, 2));
  EXPECT_EQ(device->config[6], 0x55);
  EXPECT_EQ(device->config[7], 0x66);
  EXPECT_EQ(transport->metrics().bad_register_accesses, 0u);
  device->generation = 9;
  EXPECT_EQ(Read(kMmioConfigGeneration), 9u);
}

TEST_F(MmioTransportTest, InterruptStatusIsAcknowledgedBitByBit) {
  Activate();
  VirtioInterrupt* interrupt = device->active->interrupt;
  interrupt->SignalUsedBuffer();
  interrupt->SignalConfigChange();
  EXPECT_EQ(interrupt_line->count(), 2u);
  EXPECT_EQ(Read(kMmioInterruptStatus), 3u);
  Write(kMmioInterruptAck, VirtioInterrupt::kUsedBuffer);
  EXPECT_EQ(Read(kMmioInterruptStatus), VirtioInterrupt::kConfigChange);
  Write(kMmioInterruptAck, VirtioInterrupt::kConfigChange);
  EXPECT_EQ(Read(kMmioInterruptStatus), 0u);
  Write(kMmioInterruptAck, 0xffffffff);
  EXPECT_EQ(Read(kMmioInterruptStatus), 0u);
}

TEST_F(MmioTransportTest, QueueNotifyRegisterPostsANotification) {
  Activate();
  Write(kMmioQueueNotify, 1);
  EXPECT_TRUE(device->processed.empty());  // posted, not run on the vCPU
  RunLoop();
  EXPECT_EQ(device->processed, std::vector<size_t>{1});
  // Out-of-range queue index: counted, not delivered.
  Write(kMmioQueueNotify, 2);
  RunLoop();
  EXPECT_EQ(device->processed.size(), 1u);
  EXPECT_EQ(transport->metrics().notifications_before_ready, 1u);
}

TEST_F(MmioTransportTest, NotificationsBeforeDriverOkAreCounted) {
  Write(kMmioQueueNotify, 0);
  RunLoop();
  Negotiate(kOffered);
  SetUpQueue(0, *queue0);
  transport->Notify(0);  // from the ioeventfd
  EXPECT_TRUE(device->processed.empty());
  EXPECT_EQ(transport->metrics().notifications_before_ready, 2u);
  DriverOk();
  // A kick racing with activation runs after it (posted tasks keep order).
  Write(kMmioQueueNotify, 0);
  RunLoop();
  EXPECT_EQ(device->activations, 1);
  EXPECT_EQ(device->processed, std::vector<size_t>{0});
}

// Snapshots: the transport above saved, and restored into a fresh transport
// and device over the same guest memory, as a restoring VMM builds them
// (the snapshot's memory file gives it the same RAM).
class MmioTransportSnapshotTest : public MmioTransportTest {
 protected:
  MmioTransportSnapshotTest() {
    device->complete_requests = true;
    fresh_device->complete_requests = true;
    auto line = std::make_unique<devices::CountingInterrupt>();
    fresh_line = line.get();
    fresh =
        std::make_unique<MmioTransport>(fresh_device, guest.memory(), loop.get(), std::move(line));
  }
  VirtioState Save() {
    absl::StatusOr<VirtioState> state = transport->SaveState();
    EXPECT_TRUE(state.ok()) << state.status();
    return state.value_or(VirtioState{});
  }
  // The state of a device the driver brought up with queue 0.
  VirtioState ActivatedState() {
    Activate();
    return Save();
  }
  // A request with one device-writable buffer of `length` bytes.
  uint16_t Post(FakeQueue* queue, uint32_t length) {
    return queue->AddChain({guest.Writable(length)});
  }
  uint32_t ReadFresh(uint64_t offset) { return ReadFrom(fresh.get(), offset); }

  std::shared_ptr<FakeDevice> fresh_device = std::make_shared<FakeDevice>();
  devices::CountingInterrupt* fresh_line;
  std::unique_ptr<MmioTransport> fresh;
};

TEST_F(MmioTransportSnapshotTest, SaveStateRecordsRegistersAndQueueLayout) {
  Negotiate(kFeatureVersion1 | kFeatureBit0);
  SetUpQueue(0, *queue0);
  DriverOk();
  RunLoop();
  VirtioState state = Save();
  EXPECT_EQ(state.device_type, kDeviceType);
  EXPECT_EQ(state.status, Read(kMmioStatus));
  EXPECT_EQ(state.driver_features, kFeatureVersion1 | kFeatureBit0);
  EXPECT_TRUE(state.activated);
  ASSERT_EQ(state.queues.size(), 2u);
  EXPECT_EQ(state.queues[0].size, 16u);
  EXPECT_TRUE(state.queues[0].ready);
  EXPECT_EQ(state.queues[0].desc_table, queue0->desc_table());
  EXPECT_EQ(state.queues[0].avail_ring, queue0->avail_ring());
  EXPECT_EQ(state.queues[0].used_ring, queue0->used_ring());
  EXPECT_FALSE(state.queues[1].ready);
}

TEST_F(MmioTransportSnapshotTest, RestoreActivatesTheDeviceWithTheNegotiatedFeaturesAndQueues) {
  Negotiate(kFeatureVersion1 | kFeatureBit0);
  SetUpQueue(0, *queue0);
  DriverOk();
  RunLoop();
  VirtioState state = Save();

  absl::Status restored = fresh->RestoreState(state);
  ASSERT_TRUE(restored.ok()) << restored;
  // Synchronously: RestoreState, then Activate with the queues, then Restored.
  EXPECT_EQ(fresh_device->calls,
            (std::vector<std::string>{"RestoreState", "Activate", "Restored"}));
  ASSERT_TRUE(fresh_device->active.has_value());
  const ActivateContext& context = *fresh_device->active;
  EXPECT_EQ(context.acked_features, kFeatureVersion1 | kFeatureBit0);
  ASSERT_EQ(context.queues.size(), 2u);
  ASSERT_TRUE(context.queues[0].has_value());
  EXPECT_EQ(context.queues[0]->size(), 16);
  EXPECT_FALSE(context.queues[1].has_value());
  EXPECT_EQ(context.memory, guest.memory());
  EXPECT_EQ(ReadFresh(kMmioStatus), Read(kMmioStatus));
  EXPECT_EQ(ReadFresh(kMmioQueueReady), 1u);
  // Kicks reach the restored device.
  fresh->Notify(0);
  EXPECT_EQ(fresh_device->processed, std::vector<size_t>{0});
}

TEST_F(MmioTransportSnapshotTest, RestoredQueuesGoOnFromTheSavedPositions) {
  Activate();
  for (uint32_t i = 0; i < 3; ++i) Post(queue0, 8 + i);
  transport->Notify(0);
  ASSERT_EQ(queue0->TakeUsed().size(), 3u);
  VirtioState state = Save();
  EXPECT_EQ(state.queues[0].next_avail, 3u);
  EXPECT_EQ(state.queues[0].next_used, 3u);

  ASSERT_TRUE(fresh->RestoreState(state).ok());
  EXPECT_TRUE(queue0->TakeUsed().empty());  // nothing completed twice
  uint16_t head = Post(queue0, 40);
  fresh->Notify(0);
  std::vector<UsedElement> used = queue0->TakeUsed();
  ASSERT_EQ(used.size(), 1u);
  EXPECT_EQ(used[0].id, head);
  EXPECT_EQ(used[0].length, 40u);
  EXPECT_EQ(queue0->used_idx(), 4);
  EXPECT_EQ(queue0->used(3).id, head);  // the slot after the saved ones
}

TEST_F(MmioTransportSnapshotTest, RestoreKeepsTheInterruptStatusAndRaisesTheLine) {
  Activate();
  VirtioInterrupt* interrupt = device->active->interrupt;
  interrupt->SignalUsedBuffer();
  interrupt->SignalConfigChange();
  Write(kMmioInterruptAck, VirtioInterrupt::kUsedBuffer);
  VirtioState state = Save();
  EXPECT_EQ(state.interrupt_status, VirtioInterrupt::kConfigChange);

  ASSERT_TRUE(fresh->RestoreState(state).ok());
  EXPECT_EQ(ReadFresh(kMmioInterruptStatus), VirtioInterrupt::kConfigChange);
  EXPECT_EQ(fresh_line->count(), 1u);  // the driver has not seen it yet
}

TEST_F(MmioTransportSnapshotTest, InterruptsFromTheReactivationAddToTheSavedStatus) {
  Activate();
  device->active->interrupt->SignalConfigChange();
  // Made available, not yet kicked: the restored activation completes it.
  uint16_t head = Post(queue0, 8);
  VirtioState state = Save();

  ASSERT_TRUE(fresh->RestoreState(state).ok());
  std::vector<UsedElement> used = queue0->TakeUsed();
  ASSERT_EQ(used.size(), 1u);
  EXPECT_EQ(used[0].id, head);
  // The driver must learn about that completion as well as the saved one.
  EXPECT_EQ(ReadFresh(kMmioInterruptStatus),
            VirtioInterrupt::kUsedBuffer | VirtioInterrupt::kConfigChange);
}

TEST_F(MmioTransportSnapshotTest, BrokenQueueStaysBrokenAndTheOtherQueuesKeepWorking) {
  Negotiate(kOffered);
  FakeQueue* queue1 = guest.AddQueue(8);
  SetUpQueue(0, *queue0);
  SetUpQueue(1, *queue1);
  DriverOk();
  RunLoop();
  queue1->SetAvailIdx(100);  // more than the ring holds
  transport->Notify(1);
  ASSERT_TRUE(device->active->queues[1]->broken());
  ASSERT_NE(Read(kMmioStatus) & kStatusNeedsReset, 0u);
  // Until the driver resets, the device goes on serving queue 0.
  Post(queue0, 8);
  transport->Notify(0);
  ASSERT_EQ(queue0->TakeUsed().size(), 1u);
  VirtioState state = Save();
  EXPECT_TRUE(state.queues[1].broken);
  EXPECT_FALSE(state.queues[0].broken);

  absl::Status restored = fresh->RestoreState(state);
  ASSERT_TRUE(restored.ok()) << restored;
  EXPECT_NE(ReadFresh(kMmioStatus) & kStatusNeedsReset, 0u);
  ASSERT_TRUE(fresh_device->active.has_value());
  EXPECT_TRUE(fresh_device->active->queues[1]->broken());
  Post(queue1, 8);
  fresh->Notify(1);
  EXPECT_TRUE(queue1->TakeUsed().empty());
  uint16_t head = Post(queue0, 8);
  fresh->Notify(0);
  std::vector<UsedElement> used = queue0->TakeUsed();
  ASSERT_EQ(used.size(), 1u);
  EXPECT_EQ(used[0].id, head);
}

TEST_F(MmioTransportSnapshotTest, RestoreRefusesAnotherDeviceType) {
  VirtioState state = ActivatedState();
  state.device_type = kDeviceBlock;
  absl::Status restored = fresh->RestoreState(state);
  EXPECT_EQ(restored.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(fresh_device->calls.empty());
  EXPECT_EQ(ReadFresh(kMmioStatus), 0u);
}

TEST_F(MmioTransportSnapshotTest, RestoreRefusesAnotherQueueCount) {
  VirtioState state = ActivatedState();
  state.queues.pop_back();
  absl::Status restored = fresh->RestoreState(state);
  EXPECT_EQ(restored.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(fresh_device->calls.empty());
  EXPECT_EQ(ReadFresh(kMmioStatus), 0u);
}

TEST_F(MmioTransportSnapshotTest, RestoreRefusesDriverFeaturesTheDeviceDoesNotOffer) {
  VirtioState state = ActivatedState();
  state.driver_features |= 1ull << 40;
  absl::Status restored = fresh->RestoreState(state);
  EXPECT_EQ(restored.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(fresh_device->calls.empty());
  EXPECT_EQ(ReadFresh(kMmioStatus), 0u);
}

TEST_F(MmioTransportSnapshotTest, RestoreRefusesOutOfRangeQueueValues) {
  VirtioState state = ActivatedState();
  VirtioState big_size = state;
  big_size.queues[0].size = 0x10000;
  EXPECT_EQ(fresh->RestoreState(big_size).code(), absl::StatusCode::kInvalidArgument);
  VirtioState big_index = state;
  big_index.queues[0].next_avail = 0x10000;
  EXPECT_EQ(fresh->RestoreState(big_index).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(fresh_device->activations, 0);
}

TEST_F(MmioTransportSnapshotTest, NeverActivatedTransportRestoresItsRegistersOnly) {
  Negotiate(kOffered);
  SetUpQueue(0, *queue0);
  Write(kMmioQueueSel, 1);
  VirtioState state = Save();
  EXPECT_FALSE(state.activated);

  ASSERT_TRUE(fresh->RestoreState(state).ok());
  EXPECT_EQ(fresh_device->calls, std::vector<std::string>{"RestoreState"});
  EXPECT_EQ(ReadFresh(kMmioStatus), kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
  EXPECT_EQ(ReadFresh(kMmioQueueReady), 0u);  // queue 1 is still selected
  WriteTo(fresh.get(), kMmioQueueSel, 0);
  EXPECT_EQ(ReadFresh(kMmioQueueReady), 1u);
  // The driver finishes its initialisation on the restored transport.
  WriteTo(fresh.get(), kMmioStatus,
          kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  RunLoop();
  EXPECT_EQ(fresh_device->activations, 1);
  ASSERT_TRUE(fresh_device->active.has_value());
  EXPECT_EQ(fresh_device->active->acked_features, kOffered);
  EXPECT_EQ(fresh_device->active->queues[0]->size(), 16);
}

TEST_F(MmioTransportSnapshotTest, SaveStateFailsForAnActiveDeviceWithoutItsContext) {
  device->snapshottable = false;
  Activate();
  absl::Status saved = transport->SaveState().status();
  EXPECT_EQ(saved.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(saved.message().find("fake"), absl::string_view::npos) << saved;
  EXPECT_NE(saved.message().find("cannot be snapshotted"), absl::string_view::npos) << saved;
}

}  // namespace
}  // namespace hearth::virtio
