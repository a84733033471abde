#include "vmm/devices/legacy/i8042.h"

#include "gtest/gtest.h"

namespace hearth::devices {
namespace {

class I8042Test : public ::testing::Test {
 protected:
  I8042Test() {
    auto irq = std::make_unique<CountingInterrupt>();
    interrupt = irq.get();
    i8042 = std::make_unique<I8042>(std::move(irq), [this] { ++resets; });
  }
  uint8_t In(uint64_t offset) {
    uint8_t v = 0;
    i8042->Read(offset, absl::MakeSpan(&v, 1));
    return v;
  }
  void Out(uint64_t offset, uint8_t v) {
    i8042->Write(offset, absl::MakeConstSpan(&v, 1));
  }
  CountingInterrupt* interrupt;
  std::unique_ptr<I8042> i8042;
  int resets = 0;
};

TEST_F(I8042Test, PulseResetCallsBack) {
  Out(4, 0xfe);
  EXPECT_EQ(resets, 1);
  EXPECT_EQ(i8042->resets_requested(), 1u);
}

TEST_F(I8042Test, SelfTestAndControlByte) {
  EXPECT_EQ(In(4) & 0x01, 0);  // output buffer empty
  Out(4, 0xaa);
  EXPECT_EQ(In(4) & 0x01, 1);
  EXPECT_EQ(In(0), 0x55);
  Out(4, 0x60);
  Out(0, 0x47);
  Out(4, 0x20);
  EXPECT_EQ(In(0), 0x47);
  EXPECT_EQ(resets, 0);
}

TEST_F(I8042Test, KeyboardCommandsAreAcked) {
  Out(0, 0xff);  // keyboard reset
  EXPECT_EQ(In(0), 0xfa);
  Out(4, 0xd4);  // to aux: no mouse
  Out(0, 0xf4);
  EXPECT_EQ(In(0), 0xff);
}

TEST_F(I8042Test, CtrlAltDelQueuesScancodesAndInterrupts) {
  ASSERT_TRUE(i8042->TriggerCtrlAltDel().ok());
  EXPECT_EQ(interrupt->count(), 1u);
  EXPECT_EQ(In(0), 0x14);
  EXPECT_EQ(In(0), 0x11);
  EXPECT_EQ(In(0), 0xe0);
  EXPECT_EQ(In(0), 0x71);
  EXPECT_EQ(In(4) & 0x01, 0);
  EXPECT_GE(interrupt->count(), 3u);  // re-raised while bytes remain
  // A guest that never reads fills the buffer; further injections fail.
  ASSERT_TRUE(i8042->TriggerCtrlAltDel().ok());
  ASSERT_TRUE(i8042->TriggerCtrlAltDel().ok());
  ASSERT_TRUE(i8042->TriggerCtrlAltDel().ok());
  ASSERT_TRUE(i8042->TriggerCtrlAltDel().ok());
  EXPECT_EQ(i8042->TriggerCtrlAltDel().code(),
            absl::StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace hearth::devices
