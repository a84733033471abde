#include "vmm/devices/legacy/persist.h"

#include <string>

namespace hearth::devices {
namespace {

namespace v1 = ::hearth::vmm::v1;

// The format stores each register in a uint32; the device has a byte.
uint8_t Byte(uint32_t value) { return static_cast<uint8_t>(value); }

v1::SerialState SerialStateToProto(const SerialState& state) {
  v1::SerialState proto;
  proto.set_ier(state.ier);
  proto.set_lcr(state.lcr);
  proto.set_mcr(state.mcr);
  proto.set_fcr(state.fcr);
  proto.set_scr(state.scr);
  proto.set_dll(state.dll);
  proto.set_dlm(state.dlm);
  proto.set_thre_pending(state.thre_pending);
  proto.set_rx_fifo(std::string(state.rx_fifo.begin(), state.rx_fifo.end()));
  return proto;
}

SerialState SerialStateFromProto(const v1::SerialState& proto) {
  SerialState state;
  state.ier = Byte(proto.ier());
  state.lcr = Byte(proto.lcr());
  state.mcr = Byte(proto.mcr());
  state.fcr = Byte(proto.fcr());
  state.scr = Byte(proto.scr());
  state.dll = Byte(proto.dll());
  state.dlm = Byte(proto.dlm());
  state.thre_pending = proto.thre_pending();
  state.rx_fifo.assign(proto.rx_fifo().begin(), proto.rx_fifo().end());
  return state;
}

v1::I8042State I8042StateToProto(const I8042State& state) {
  v1::I8042State proto;
  proto.set_control(state.control);
  proto.set_status(state.status);
  proto.set_pending_command(state.pending_command);
  proto.set_buffer(std::string(state.buffer.begin(), state.buffer.end()));
  return proto;
}

I8042State I8042StateFromProto(const v1::I8042State& proto) {
  I8042State state;
  state.control = Byte(proto.control());
  state.status = Byte(proto.status());
  state.pending_command = Byte(proto.pending_command());
  state.buffer.assign(proto.buffer().begin(), proto.buffer().end());
  return state;
}

}  // namespace

void SaveSerialState(const Serial& serial, v1::SerialState* proto) {
  *proto = SerialStateToProto(serial.SaveState());
}

void RestoreSerialState(const v1::SerialState& proto, Serial* serial) {
  serial->RestoreState(SerialStateFromProto(proto));
}

void SaveI8042State(const I8042& i8042, v1::I8042State* proto) {
  *proto = I8042StateToProto(i8042.SaveState());
}

void RestoreI8042State(const v1::I8042State& proto, I8042* i8042) {
  i8042->RestoreState(I8042StateFromProto(proto));
}

}  // namespace hearth::devices
