#include "mpvm/connection.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace mpvm {

void SetNonBlocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }
void SetCloexec(int fd) { fcntl(fd, F_SETFD, FD_CLOEXEC); }

namespace {
bool FillAddr(const std::string& path, sockaddr_un& a) {
  std::memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof a.sun_path) return false;
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  return true;
}
}  // namespace

int ConnectUnix(const std::string& path) {
  sockaddr_un a;
  if (!FillAddr(path, a)) return -ENAMETOOLONG;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    int e = errno;
    close(fd);
    return -e;
  }
  SetNonBlocking(fd);
  return fd;
}

int ListenUnix(const std::string& path, int backlog) {
  sockaddr_un a;
  if (!FillAddr(path, a)) return -ENAMETOOLONG;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -errno;
  unlink(path.c_str());
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(fd, backlog) != 0) {
    int e = errno;
    close(fd);
    return -e;
  }
  return fd;
}

Connection::Connection(int fd, uint32_t max_frame)
    : fd_(fd), reader_(max_frame), reader_max_(max_frame) {}

Connection::~Connection() { Close(); }

void Connection::Close() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  out_.clear();
  queued_ = 0;
  out_offset_ = 0;
}

void Connection::Abandon() {
  fd_ = -1;
  out_.clear();
  queued_ = 0;
  out_offset_ = 0;
}

std::vector<uint8_t> Connection::TakeUnsent() {
  std::vector<uint8_t> all;
  all.reserve(UnsentSize());
  ForEachUnsent([&](std::span<const uint8_t> s) { all.insert(all.end(), s.begin(), s.end()); });
  out_.clear();
  queued_ = 0;
  out_offset_ = 0;
  return all;
}

bool Connection::Send(const FrameHeader& h, std::span<const uint8_t> aux,
                      std::span<const uint8_t> body) {
  if (fd_ < 0) return false;
  FrameHeader hh = h;
  hh.aux_length = static_cast<uint32_t>(aux.size());
  hh.length = static_cast<uint32_t>(aux.size() + body.size());
  auto head = EncodeFrameHeader(hh);
  if (cipher_) {
    scratch_.assign(head.begin(), head.end());
    scratch_.insert(scratch_.end(), aux.begin(), aux.end());
    scratch_.insert(scratch_.end(), body.begin(), body.end());
    std::vector<uint8_t> record;
    record.reserve(scratch_.size() + LinkCipher::kOverhead);
    cipher_->Seal(scratch_, record);
    return SendBytes(record);
  }
  const size_t total = head.size() + aux.size() + body.size();
  size_t written = 0;
  if (out_.empty()) {
    iovec iov[3] = {{head.data(), head.size()},
                    {const_cast<uint8_t*>(aux.data()), aux.size()},
                    {const_cast<uint8_t*>(body.data()), body.size()}};
    int iovcnt = 3;
    iovec* v = iov;
    while (written < total) {
      msghdr msg{};
      msg.msg_iov = v;
      msg.msg_iovlen = static_cast<size_t>(iovcnt);
      ssize_t n = sendmsg(fd_, &msg, MSG_NOSIGNAL);  // a gone peer is an error, not SIGPIPE
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) break;
        Close();
        return false;
      }
      written += static_cast<size_t>(n);
      size_t k = static_cast<size_t>(n);
      while (iovcnt > 0 && k >= v->iov_len) {
        k -= v->iov_len;
        ++v;
        --iovcnt;
      }
      if (iovcnt > 0) {
        v->iov_base = static_cast<uint8_t*>(v->iov_base) + k;
        v->iov_len -= k;
      }
    }
  }
  if (written == total) return true;
  // Queue the unwritten rest.
  std::vector<uint8_t> rest;
  rest.reserve(total - written);
  auto append = [&](std::span<const uint8_t> s) {
    if (written >= s.size()) {
      written -= s.size();
      return;
    }
    rest.insert(rest.end(), s.begin() + static_cast<ptrdiff_t>(written), s.end());
    written = 0;
  };
  append(head);
  append(aux);
  append(body);
  queued_ += rest.size();
  out_.push_back(std::move(rest));
  return true;
}

bool Connection::SendBytes(std::span<const uint8_t> bytes) {
  // Queue behind anything already waiting, then write what the socket takes.
  out_.emplace_back(bytes.begin(), bytes.end());
  queued_ += bytes.size();
  return Flush();
}

bool Connection::Flush() {
  while (!out_.empty()) {
    auto& front = out_.front();
    ssize_t n = send(fd_, front.data() + out_offset_, front.size() - out_offset_, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return true;
      Close();
      return false;
    }
    out_offset_ += static_cast<size_t>(n);
    queued_ -= static_cast<size_t>(n);
    if (out_offset_ == front.size()) {
      out_.pop_front();
      out_offset_ = 0;
    }
  }
  return true;
}

Connection::ReadResult Connection::ReadAvailable(size_t budget) {
  drained_ = false;
  if (cipher_) {
    // Read sealed records, open each whole one and hand the frames on.
    size_t got = 0;
    ReadResult rr = ReadResult::kOk;
    while (got < budget) {
      uint8_t buf[64 * 1024];
      ssize_t n = read(fd_, buf, sizeof buf);
      if (n > 0) {
        sealed_in_.insert(sealed_in_.end(), buf, buf + n);
        got += static_cast<size_t>(n);
        if (static_cast<size_t>(n) < sizeof buf) {
          drained_ = true;
          break;
        }
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) {
        drained_ = true;
        break;
      }
      rr = n == 0 ? ReadResult::kClosed : ReadResult::kError;
      break;
    }
    size_t at = 0;
    while (sealed_in_.size() - at >= 4) {
      uint32_t len = 0;
      for (int i = 0; i < 4; ++i)
        len |= uint32_t{sealed_in_[at + static_cast<size_t>(i)]} << (8 * i);
      if (len > reader_max_ + 64) return ReadResult::kError;  // no frame is this big
      if (sealed_in_.size() - at - 4 < len) break;
      if (!cipher_->Open(std::span(sealed_in_).subspan(at + 4, len), scratch_))
        return ReadResult::kError;  // altered, replayed or out of order
      reader_.Feed(scratch_);
      at += 4 + len;
    }
    sealed_in_.erase(sealed_in_.begin(), sealed_in_.begin() + static_cast<ptrdiff_t>(at));
    return rr;
  }
  size_t got = 0;
  while (got < budget && !reader_.HasLargeFrame()) {
    auto space = reader_.WritableSpace();
    ssize_t n = read(fd_, space.data(), space.size());
    if (n > 0) {
      reader_.Commit(static_cast<size_t>(n));
      got += static_cast<size_t>(n);
      if (static_cast<size_t>(n) < space.size()) {
        drained_ = true;
        return ReadResult::kOk;
      }
      continue;
    }
    if (n == 0) return ReadResult::kClosed;
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {
      drained_ = true;
      return ReadResult::kOk;
    }
    return ReadResult::kError;
  }
  return ReadResult::kOk;
}

}  // namespace mpvm
