#include "edge/request_pipeline.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace roomcast::edge {

bool RateLimiter::Allow(SteadyTime now) {
  double elapsed = std::chrono::duration<double>(now - last_).count();
  last_ = now;
  tokens_ = std::min(burst_, tokens_ + std::max(0.0, elapsed) * rate_);
  if (tokens_ < 1) return false;
  tokens_ -= 1;
  return true;
}

bool BadRequestCounter::Count(SteadyTime now) {
  if (now - window_start_ > window_) {
    window_start_ = now;
    count_ = 0;
  }
  return ++count_ > max_per_window_;
}

ReplyOrder::Slot ReplyOrder::Reserve() {
  Slot slot = next_slot_++;
  slots_.push_back({slot, std::nullopt});
  return slot;
}

void ReplyOrder::Fill(Slot slot, std::vector<std::string> frames) {
  for (Entry& entry : slots_) {
    if (entry.slot == slot) {
      entry.frames = std::move(frames);
      return;
    }
  }
}

void ReplyOrder::AddReady(std::string frame) {
  std::vector<std::string> frames;
  frames.push_back(std::move(frame));
  slots_.push_back({next_slot_++, std::move(frames)});
}

std::vector<std::string> ReplyOrder::TakeReady() {
  std::vector<std::string> out;
  auto ready = slots_.begin();
  for (; ready != slots_.end() && ready->frames.has_value(); ++ready) {
    for (std::string& frame : *ready->frames) out.push_back(std::move(frame));
  }
  slots_.erase(slots_.begin(), ready);
  return out;
}

absl::Status RoomSet::BeginJoin(const std::string& room) {
  if (joined_.contains(room) || joining_.contains(room)) {
    return absl::AlreadyExistsError(absl::StrCat("already joined \"", room, "\""));
  }
  if (size() >= max_rooms_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("too many rooms on one connection (limit ", max_rooms_, ")"));
  }
  joining_.insert(room);
  return absl::OkStatus();
}

std::vector<std::string> RoomSet::TakeJoined() {
  std::vector<std::string> out(joined_.begin(), joined_.end());
  joined_.clear();
  joining_.clear();
  return out;
}

bool ReplyFits(const EdgeOptions& options, size_t queued_bytes, size_t frame_bytes) {
  return queued_bytes == 0 ||
         queued_bytes + frame_bytes <= options.reply_queue_factor * options.max_queued_bytes;
}

}  // namespace roomcast::edge
