#include "edge/write_scheduler.h"

#include <utility>

namespace roomcast::edge {

WriteScheduler::WriteScheduler(absl::Duration write_delay, size_t max_batch_bytes)
    : write_delay_(absl::ToChronoNanoseconds(write_delay)), max_batch_bytes_(max_batch_bytes) {}

WriteScheduler::Action WriteScheduler::OnQueued(size_t queued, SteadyTime now) {
  if (scheduled_) return queued >= max_batch_bytes_ ? Action::kWriteNow : Action::kNone;
  scheduled_ = true;
  if (write_delay_ > std::chrono::steady_clock::duration::zero() && queued < max_batch_bytes_ &&
      last_write_ != SteadyTime::min() && now - last_write_ < write_delay_) {
    return Action::kDelay;
  }
  return Action::kPost;
}

void WriteQueue::Push(std::shared_ptr<const void> owner, absl::string_view entry) {
  entries_.push_back({std::move(owner), entry});
  queued_bytes_ += entry.size();
}

void WriteQueue::PushCopy(absl::string_view entry) {
  auto copy = std::make_shared<const std::string>(entry);
  absl::string_view view = *copy;
  Push(std::move(copy), view);
}

absl::string_view WriteQueue::TakeBatch(bool strip_first_byte) {
  size_t count = 0;
  size_t bytes = 0;
  for (; count < entries_.size(); ++count) {
    const size_t size = entries_[count].bytes.size();
    if (count > 0 && bytes + size > max_batch_bytes_) break;
    bytes += size;
  }
  write_buffer_.reserve(bytes);
  for (size_t i = 0; i < count; ++i) {
    absl::string_view entry = entries_[i].bytes;
    if (i == 0 && strip_first_byte && !entry.empty()) entry.remove_prefix(1);
    write_buffer_.append(entry.data(), entry.size());
  }
  entries_.erase(entries_.begin(), entries_.begin() + static_cast<std::ptrdiff_t>(count));
  if (entries_.empty()) std::vector<Entry>().swap(entries_);  // Idle: no capacity kept.
  queued_bytes_ -= bytes - write_buffer_.size();
  writing_ = true;
  return write_buffer_;
}

void WriteQueue::WriteDone() {
  writing_ = false;
  queued_bytes_ -= write_buffer_.size();
  std::string().swap(write_buffer_);  // Idle connections hold no buffer.
}

void WriteQueue::DropPending() {
  std::vector<Entry>().swap(entries_);
  queued_bytes_ = write_buffer_.size();
}

}  // namespace roomcast::edge
