#include "vmm/devices/virtio/balloon/balloon.h"

#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>

#include "gtest/gtest.h"
#include "vmm/devices/virtio/testing/fake_guest.h"

namespace hearth::virtio {
namespace {

using testing::FakeDriver;
using testing::FakeGuest;
using testing::FakeQueue;
using testing::TestInterrupt;
using testing::UsedElement;

constexpr uint64_t kFeatures = kFeatureVersion1;
constexpr uint64_t kPage = kBalloonPageSize;

std::string Pfns(std::initializer_list<uint32_t> pfns) {
  std::string bytes;
  for (uint32_t pfn : pfns) bytes.append(reinterpret_cast<const char*>(&pfn), 4);
  return bytes;
}

// One virtio_balloon_stat: u16 tag, u64 value, packed.
std::string Stat(uint16_t tag, uint64_t value) {
  std::string bytes(10, '\0');
  std::memcpy(bytes.data(), &tag, 2);
  std::memcpy(bytes.data() + 2, &value, 8);
  return bytes;
}

class BalloonTest : public ::testing::Test {
 protected:
  void Start(uint32_t amount_mib = 4, uint32_t stats_interval_s = 0) {
    balloon = *Balloon::Create(amount_mib, /*deflate_on_oom=*/true, stats_interval_s);
    std::vector<FakeQueue*> queues = {inflate, deflate};
    if (stats_interval_s > 0) queues.push_back(stats);
    ASSERT_TRUE(balloon
                    ->Activate(testing::MakeActivateContext(&guest, queues, interrupt.get(),
                                                            loop.get(), kFeatures))
                    .ok());
  }
  // The device behind a virtio-mmio transport, brought up by the fake
  // driver (snapshots save and restore the transport with the device). The
  // driver accepts statistics if `accept_stats` and the device offers them.
  void StartBehindTransport(uint32_t amount_mib, uint32_t stats_interval_s,
                            bool accept_stats = true) {
    balloon = *Balloon::Create(amount_mib, /*deflate_on_oom=*/true, stats_interval_s);
    driver = std::make_unique<FakeDriver>(balloon, &guest, loop.get());
    const bool stats_on = accept_stats && stats_interval_s > 0;
    driver->Initialize(kFeatures | (stats_on ? kBalloonFStatsVq : 0),
                       {inflate, deflate, stats_on ? stats : nullptr});
  }
  // Drops the running device, as the snapshotted VMM exits, and builds a
  // fresh one from this configuration, not yet restored.
  void ReplaceDevice(uint32_t amount_mib, uint32_t stats_interval_s) {
    driver.reset();
    balloon.reset();
    balloon = *Balloon::Create(amount_mib, /*deflate_on_oom=*/true, stats_interval_s);
    driver = std::make_unique<FakeDriver>(balloon, &guest, loop.get());
  }
  uint32_t ConfigWord(uint64_t offset) {
    uint32_t value;
    balloon->ReadConfig(offset, absl::MakeSpan(reinterpret_cast<uint8_t*>(&value), 4));
    return value;
  }

  FakeGuest guest;
  FakeQueue* inflate = guest.AddQueue(16);
  FakeQueue* deflate = guest.AddQueue(16);
  FakeQueue* stats = guest.AddQueue(16);
  TestInterrupt interrupt;
  std::unique_ptr<EventLoop> loop = *EventLoop::Create();
  std::shared_ptr<Balloon> balloon;
  std::unique_ptr<FakeDriver> driver;
};

TEST_F(BalloonTest, FeaturesFollowTheConfiguration) {
  auto plain = *Balloon::Create(1, false, 0);
  EXPECT_EQ(plain->features(), kFeatureVersion1 | kFeatureIndirectDesc | kFeatureEventIdx);
  auto full = *Balloon::Create(1, true, 5);
  EXPECT_EQ(full->features() & (kBalloonFStatsVq | kBalloonFDeflateOnOom),
            kBalloonFStatsVq | kBalloonFDeflateOnOom);
}

TEST_F(BalloonTest, ConfigHasNumPagesAndTheDriverWritesActual) {
  Start(/*amount_mib=*/3);
  EXPECT_EQ(ConfigWord(0), 3u * 256);
  EXPECT_EQ(ConfigWord(4), 0u);
  uint32_t actual = 512;
  balloon->WriteConfig(4, absl::MakeConstSpan(reinterpret_cast<uint8_t*>(&actual), 4));
  EXPECT_EQ(ConfigWord(4), 512u);
  // num_pages is the device's; partial writes of actual are ignored.
  uint32_t bogus = 7;
  balloon->WriteConfig(0, absl::MakeConstSpan(reinterpret_cast<uint8_t*>(&bogus), 4));
  balloon->WriteConfig(4, absl::MakeConstSpan(reinterpret_cast<uint8_t*>(&bogus), 2));
  EXPECT_EQ(ConfigWord(0), 3u * 256);
  EXPECT_EQ(ConfigWord(4), 512u);
  BalloonStatistics statistics = balloon->statistics();
  EXPECT_EQ(statistics.target_pages, 768u);
  EXPECT_EQ(statistics.actual_pages, 512u);
}

TEST_F(BalloonTest, InflateGivesPagesBackToTheHost) {
  Start();
  const uint32_t pfn = 0x900;  // 9 MiB, away from the fake guest's allocations
  guest.Write(pfn * kPage, std::string(kPage, '\xab'));
  guest.Write((pfn + 1) * kPage, "keep");
  uint16_t head = inflate->AddChain({guest.Readable(Pfns({pfn}))});
  balloon->ProcessQueue(Balloon::kInflateQueue);
  std::vector<UsedElement> used = inflate->TakeUsed();
  ASSERT_EQ(used.size(), 1u);
  EXPECT_EQ(used[0].id, head);
  EXPECT_EQ(used[0].length, 0u);
  EXPECT_EQ(guest.Read(pfn * kPage, kPage), std::string(kPage, '\0'));
  EXPECT_EQ(guest.Read((pfn + 1) * kPage, 4), "keep");  // only that page
  EXPECT_EQ(balloon->metrics().inflated_pages.Get(), 1u);
  EXPECT_EQ(interrupt.count(), 1u);
}

TEST_F(BalloonTest, BadPfnsAreCountedAndSkipped) {
  Start();
  const uint32_t ram_pages = FakeGuest::kDefaultMemorySize / kPage;
  guest.Write(0xa00 * kPage, "data");
  inflate->AddChain({guest.Readable(Pfns({ram_pages, 0xffffffff, 0xa00}))});
  balloon->ProcessQueue(Balloon::kInflateQueue);
  EXPECT_EQ(inflate->used_idx(), 1);
  EXPECT_EQ(balloon->metrics().bad_pfns.Get(), 2u);
  EXPECT_EQ(balloon->metrics().inflated_pages.Get(), 1u);
  EXPECT_EQ(guest.Read(0xa00 * kPage, 4), std::string(4, '\0'));
}

// Frames in any order: consecutive ones are released together, a run that
// crosses the end of RAM still releases its good pages and counts the bad.
TEST_F(BalloonTest, RunsOfFramesAreReleasedAndBadOnesInThemCounted) {
  Start();
  const uint32_t last = FakeGuest::kDefaultMemorySize / kPage - 1;
  for (uint32_t pfn : {0xc00u, 0xc01u, 0xc02u, 0xc10u, last}) {
    guest.Write(uint64_t{pfn} * kPage, "data");
  }
  guest.Write(0xc03 * kPage, "keep");
  inflate->AddChain({guest.Readable(Pfns({0xc02, 0xc10, 0xc00, last + 1, last, 0xc01, last + 2}))});
  balloon->ProcessQueue(Balloon::kInflateQueue);
  EXPECT_EQ(balloon->metrics().inflated_pages.Get(), 5u);
  EXPECT_EQ(balloon->metrics().bad_pfns.Get(), 2u);
  for (uint32_t pfn : {0xc00u, 0xc01u, 0xc02u, 0xc10u, last}) {
    EXPECT_EQ(guest.Read(uint64_t{pfn} * kPage, 4), std::string(4, '\0')) << pfn;
  }
  EXPECT_EQ(guest.Read(0xc03 * kPage, 4), "keep");
}

TEST_F(BalloonTest, DeflateIsCountedAndTouchesNothing) {
  Start();
  guest.Write(0xb00 * kPage, "live");
  deflate->AddChain({guest.Readable(Pfns({0xb00, 0xb01}) + "xx")});  // a stray half pfn
  balloon->ProcessQueue(Balloon::kDeflateQueue);
  EXPECT_EQ(deflate->used_idx(), 1);
  EXPECT_EQ(balloon->metrics().deflated_pages.Get(), 2u);
  EXPECT_EQ(balloon->metrics().inflated_pages.Get(), 0u);
  EXPECT_EQ(guest.Read(0xb00 * kPage, 4), "live");
}

TEST_F(BalloonTest, ActivationNeedsInflateAndDeflateQueues) {
  auto device = *Balloon::Create(1, false, 0);
  EXPECT_FALSE(device
                   ->Activate(testing::MakeActivateContext(&guest, {inflate}, interrupt.get(),
                                                           loop.get(), kFeatures))
                   .ok());
  EXPECT_FALSE(device
                   ->Activate(testing::MakeActivateContext(&guest, {inflate, nullptr},
                                                           interrupt.get(), loop.get(), kFeatures))
                   .ok());
}

TEST_F(BalloonTest, StatsBufferIsKeptAndReturnedOnTheTimer) {
  Start(4, /*stats_interval_s=*/1);
  uint16_t head = stats->AddChain({guest.Readable(Stat(0, 11) + Stat(4, 4096) + "junk")});
  balloon->ProcessQueue(Balloon::kStatsQueue);
  BalloonStatistics statistics = balloon->statistics();
  EXPECT_EQ(statistics.values.size(), 2u);
  EXPECT_EQ(statistics.values[0], 11u);
  EXPECT_EQ(statistics.values[4], 4096u);
  EXPECT_EQ(balloon->metrics().stats_updates.Get(), 1u);
  // Kept: returning it is how the device asks for the next numbers.
  EXPECT_EQ(stats->used_idx(), 0);

  // The polling interval (1 s) elapses on the event loop.
  for (int i = 0; i < 30 && stats->used_idx() == 0; ++i) {
    ASSERT_TRUE(loop->RunOnce(100).ok());
  }
  std::vector<UsedElement> used = stats->TakeUsed();
  ASSERT_EQ(used.size(), 1u);
  EXPECT_EQ(used[0].id, head);
  EXPECT_GE(interrupt.count(), 1u);

  // The guest answers with fresh numbers.
  stats->AddChain({guest.Readable(Stat(4, 2048))});
  balloon->ProcessQueue(Balloon::kStatsQueue);
  EXPECT_EQ(balloon->statistics().values[4], 2048u);
  EXPECT_EQ(balloon->metrics().stats_updates.Get(), 2u);
}

TEST_F(BalloonTest, ASecondStatsBufferReturnsTheFirst) {
  Start(4, 60);
  uint16_t first = stats->AddChain({guest.Readable(Stat(1, 1))});
  stats->AddChain({guest.Readable(Stat(1, 2))});
  balloon->ProcessQueue(Balloon::kStatsQueue);
  std::vector<UsedElement> used = stats->TakeUsed();
  ASSERT_EQ(used.size(), 1u);
  EXPECT_EQ(used[0].id, first);
  EXPECT_EQ(balloon->statistics().values[1], 2u);
}

TEST_F(BalloonTest, SetTargetBumpsGenerationAndRaisesConfigChange) {
  Start(4);
  balloon->SetTarget(10);
  EXPECT_EQ(ConfigWord(0), 2560u);
  EXPECT_EQ(balloon->config_generation(), 1u);
  EXPECT_EQ(interrupt.status(), VirtioInterrupt::kConfigChange);
  EXPECT_EQ(interrupt.count(), 1u);
}

TEST_F(BalloonTest, StatsCanBeRetimedButNotSwitchedOnOrOff) {
  auto without = *Balloon::Create(1, false, 0);
  EXPECT_EQ(without->SetStatsInterval(5).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(without->SetStatsInterval(0).ok());
  auto with = *Balloon::Create(1, false, 5);
  EXPECT_FALSE(with->SetStatsInterval(0).ok());
  EXPECT_TRUE(with->SetStatsInterval(10).ok());
}

TEST_F(BalloonTest, ResetForgetsActual) {
  Start();
  uint32_t actual = 5;
  balloon->WriteConfig(4, absl::MakeConstSpan(reinterpret_cast<uint8_t*>(&actual), 4));
  balloon->Reset();
  EXPECT_EQ(ConfigWord(4), 0u);
}

TEST_F(BalloonTest, SnapshotKeepsTargetActualStatisticsAndInterval) {
  StartBehindTransport(4, /*stats_interval_s=*/60);
  balloon->SetTarget(6);
  driver->Write(kMmioConfig + 4, 512);  // the driver's `actual`
  uint16_t head = stats->AddChain({guest.Readable(Stat(0, 11) + Stat(4, 4096))});
  driver->Kick(Balloon::kStatsQueue);
  VirtioState state = driver->SaveState();
  ASSERT_TRUE(std::holds_alternative<BalloonState>(state.device));
  const BalloonState& saved = std::get<BalloonState>(state.device);
  EXPECT_EQ(saved.num_pages, 6u * 256);
  EXPECT_EQ(saved.actual, 512u);
  EXPECT_EQ(saved.stats_polling_interval_s, 60u);
  EXPECT_EQ(saved.stats_head, std::optional<uint32_t>(head));

  ReplaceDevice(1, /*stats_interval_s=*/30);  // configured differently
  absl::Status restored = driver->transport()->RestoreState(state);
  ASSERT_TRUE(restored.ok()) << restored;
  EXPECT_EQ(driver->Read(kMmioConfig), 6u * 256);
  EXPECT_EQ(driver->Read(kMmioConfig + 4), 512u);
  BalloonStatistics statistics = balloon->statistics();
  EXPECT_EQ(statistics.target_pages, 6u * 256);
  EXPECT_EQ(statistics.actual_pages, 512u);
  EXPECT_EQ(statistics.values, (std::map<uint16_t, uint64_t>{{0, 11}, {4, 4096}}));
  // Saved again, it is the same state.
  VirtioState again = driver->SaveState();
  EXPECT_EQ(again.device, state.device);
}

TEST_F(BalloonTest, RestoreRefusesStatisticsOnInTheSnapshotButOffHere) {
  StartBehindTransport(4, /*stats_interval_s=*/60, /*accept_stats=*/false);
  VirtioState state = driver->SaveState();
  ReplaceDevice(4, /*stats_interval_s=*/0);
  absl::Status restored = driver->transport()->RestoreState(state);
  EXPECT_EQ(restored.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(restored.message().find("statistics"), absl::string_view::npos) << restored;
  EXPECT_EQ(balloon->activated(), nullptr);
}

TEST_F(BalloonTest, RestoreRefusesStatisticsOffInTheSnapshotButOnHere) {
  StartBehindTransport(4, /*stats_interval_s=*/0);
  VirtioState state = driver->SaveState();
  ReplaceDevice(4, /*stats_interval_s=*/60);
  absl::Status restored = driver->transport()->RestoreState(state);
  EXPECT_EQ(restored.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(restored.message().find("statistics"), absl::string_view::npos) << restored;
  EXPECT_EQ(balloon->activated(), nullptr);
}

TEST_F(BalloonTest, RestoredBalloonReturnsTheHeldStatsBufferAtTheNextPoll) {
  StartBehindTransport(4, /*stats_interval_s=*/1);
  uint16_t head = stats->AddChain({guest.Readable(Stat(4, 4096))});
  driver->Kick(Balloon::kStatsQueue);
  VirtioState state = driver->SaveState();
  ReplaceDevice(4, /*stats_interval_s=*/1);
  ASSERT_TRUE(driver->transport()->RestoreState(state).ok());
  EXPECT_EQ(stats->used_idx(), 0);  // held until the poll

  for (int i = 0; i < 30 && stats->used_idx() == 0; ++i) {
    ASSERT_TRUE(loop->RunOnce(100).ok());
  }
  std::vector<UsedElement> used = stats->TakeUsed();
  ASSERT_EQ(used.size(), 1u);
  EXPECT_EQ(used[0].id, head);
  EXPECT_EQ(driver->Read(kMmioInterruptStatus), VirtioInterrupt::kUsedBuffer);
}

TEST_F(BalloonTest, RestoreRefusesAStatsBufferOutsideTheStatsQueue) {
  StartBehindTransport(4, /*stats_interval_s=*/60);
  VirtioState state = driver->SaveState();
  // The stats queue's size (16), the largest queue size, and beyond.
  for (uint32_t head : {16u, 256u, 0xffffffffu}) {
    ReplaceDevice(4, 60);
    std::get<BalloonState>(state.device).stats_head = head;
    EXPECT_EQ(driver->transport()->RestoreState(state).code(), absl::StatusCode::kInvalidArgument)
        << head;
    EXPECT_EQ(balloon->activated(), nullptr);
  }
}

}  // namespace
}  // namespace hearth::virtio
