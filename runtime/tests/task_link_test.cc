// Direct task links across hosts: the challenge-response and the cipher.
#include "mpvm/task_link.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <future>
#include <memory>
#include <utility>
#include <vector>

#include "mpvm/connection.h"

namespace mpvm {
namespace {

struct Pair {
  int c = -1, a = -1;
  Pair() {
    int sv[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    c = sv[0];
    a = sv[1];
  }
  ~Pair() {
    if (c >= 0) close(c);
    if (a >= 0) close(a);
  }
};

// Runs the acceptor on this thread until it finishes (bounded).
AcceptHandshake::State RunAcceptor(AcceptHandshake& acc) {
  for (int i = 0; i < 1000; ++i) {
    pollfd p{acc.fd(), POLLIN, 0};
    if (poll(&p, 1, 5000) <= 0) break;
    auto st = acc.Step();
    if (st != AcceptHandshake::State::kPending) return st;
  }
  return AcceptHandshake::State::kPending;
}

TEST(TaskLink, BothSidesHoldingTheKeyMakeALink) {
  Pair p;
  const LinkKey key = DeriveLinkKey("secret-of-the-vm");
  auto connector = std::async(std::launch::async, [&] {
    return ConnectHandshake(p.c, key, 0x40001, 0x80002, /*encrypt=*/false, 5000);
  });
  AcceptHandshake acc(p.a, key, 0x80002, /*require_encrypt=*/false);
  EXPECT_EQ(RunAcceptor(acc), AcceptHandshake::State::kDone) << acc.error();
  EXPECT_EQ(acc.peer(), 0x40001);  // the acceptor learns who connected
  auto res = connector.get();
  EXPECT_TRUE(res.ok) << res.error;
  EXPECT_EQ(res.cipher, nullptr);
}

// Two tasks on different hosts that send to each other at once each start
// a link to the other. One thread drives all four handshakes, as each task's
// own poll loop does: a connector that waited for its answer would never let
// its own acceptor answer the other (they used to wait 2 s for each other).
TEST(TaskLink, TwoTasksLinkingToEachOtherAtOnceBothSucceedOnOneThread) {
  const LinkKey key = DeriveLinkKey("secret-of-the-vm");
  uint16_t port_a = 0, port_b = 0;
  const int listen_a = ListenTcpAny(&port_a), listen_b = ListenTcpAny(&port_b);
  ASSERT_GE(listen_a, 0);
  ASSERT_GE(listen_b, 0);
  std::vector<std::unique_ptr<LinkHandshake>> hs;
  const int a_to_b = StartConnectTcp("127.0.0.1", port_b),
            b_to_a = StartConnectTcp("127.0.0.1", port_a);
  ASSERT_GE(a_to_b, 0);
  ASSERT_GE(b_to_a, 0);
  hs.push_back(std::make_unique<ConnectingHandshake>(a_to_b, key, 0x40001, 0x80002, false));
  hs.push_back(std::make_unique<ConnectingHandshake>(b_to_a, key, 0x80002, 0x40001, false));
  for (auto [l, me] : {std::pair{listen_a, 0x40001}, std::pair{listen_b, 0x80002}}) {
    pollfd p{l, POLLIN, 0};
    ASSERT_EQ(poll(&p, 1, 5000), 1);
    const int fd = accept4(l, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    ASSERT_GE(fd, 0);
    hs.push_back(std::make_unique<AcceptHandshake>(fd, key, me, false));
  }
  std::vector<LinkHandshake::State> st(hs.size(), LinkHandshake::State::kPending);
  for (int round = 0; round < 100; ++round) {
    std::vector<pollfd> fds;
    for (auto& h : hs) fds.push_back({h->fd(), h->events(), 0});
    ASSERT_GT(poll(fds.data(), fds.size(), 5000), 0);
    for (size_t i = 0; i < hs.size(); ++i)
      if (st[i] == LinkHandshake::State::kPending && fds[i].revents != 0) st[i] = hs[i]->Step();
    if (std::count(st.begin(), st.end(), LinkHandshake::State::kPending) == 0) break;
  }
  for (size_t i = 0; i < hs.size(); ++i)
    EXPECT_EQ(st[i], LinkHandshake::State::kDone) << i << ": " << hs[i]->error();
  EXPECT_EQ(hs[2]->peer(), 0x80002);  // a accepted b
  EXPECT_EQ(hs[3]->peer(), 0x40001);
  for (auto& h : hs) close(h->fd());
  close(listen_a);
  close(listen_b);
}

TEST(TaskLink, AConnectionToNobodyFailsWithTheReason) {
  uint16_t port = 0;
  const int l = ListenTcpAny(&port);
  ASSERT_GE(l, 0);
  close(l);  // nobody listens there now
  const int fd = StartConnectTcp("127.0.0.1", port);
  ASSERT_GE(fd, 0);
  ConnectingHandshake hs(fd, DeriveLinkKey("k"), 1, 2, false);
  pollfd p{fd, hs.events(), 0};
  ASSERT_EQ(poll(&p, 1, 5000), 1);
  EXPECT_EQ(hs.Step(), LinkHandshake::State::kFailed);
  EXPECT_NE(hs.error().find("cannot connect"), std::string::npos) << hs.error();
  close(fd);
}

TEST(TaskLink, AWrongKeyIsRefusedOnBothSides) {
  Pair p;
  auto connector = std::async(std::launch::async, [&] {
    auto r = ConnectHandshake(p.c, DeriveLinkKey("outsider"), 0x40001, 0x80002, false, 5000);
    if (!r.ok) shutdown(p.c, SHUT_RDWR);  // as the runtime does: it closes the link
    return r;
  });
  AcceptHandshake acc(p.a, DeriveLinkKey("secret-of-the-vm"), 0x80002, false);
  // The acceptor answers the hello; the connector cannot verify the answer
  // and gives up, so the acceptor never sees a valid confirmation.
  EXPECT_EQ(RunAcceptor(acc), AcceptHandshake::State::kFailed);
  auto res = connector.get();
  EXPECT_FALSE(res.ok);
  EXPECT_NE(res.error.find("does not hold this VM's key"), std::string::npos) << res.error;
}

TEST(TaskLink, AConfirmationWithoutTheKeyIsRefused) {
  Pair p;
  const LinkKey key = DeriveLinkKey("secret-of-the-vm");
  AcceptHandshake acc(p.a, key, 0x80002, false);
  // An outsider sends a well-formed hello and a made-up confirmation.
  uint8_t hello[kHelloSize] = {'M', 'P', 'V', 'M', 'L', 'N', 'K', '1', 0, 0,
                               0,   0,   1,   0,   4,   0,   2,   0,   8, 0};
  ASSERT_EQ(write(p.c, hello, sizeof hello), static_cast<ssize_t>(sizeof hello));
  uint8_t confirm[kConfirmSize] = {};
  ASSERT_EQ(write(p.c, confirm, sizeof confirm), static_cast<ssize_t>(sizeof confirm));
  EXPECT_EQ(RunAcceptor(acc), AcceptHandshake::State::kFailed);
  EXPECT_NE(acc.error().find("does not hold"), std::string::npos) << acc.error();
}

TEST(TaskLink, ALinkForAnotherTaskOrGarbageIsRefused) {
  const LinkKey key = DeriveLinkKey("k");
  {
    Pair p;
    auto connector = std::async(
        std::launch::async, [&] { return ConnectHandshake(p.c, key, 1, 0x80003, false, 2000); });
    AcceptHandshake acc(p.a, key, 0x80002, false);
    EXPECT_EQ(RunAcceptor(acc), AcceptHandshake::State::kFailed);
    EXPECT_NE(acc.error().find("another task"), std::string::npos);
    close(p.a);
    p.a = -1;
    EXPECT_FALSE(connector.get().ok);
  }
  {
    Pair p;
    std::string junk(kHelloSize, 'x');
    ASSERT_EQ(write(p.c, junk.data(), junk.size()), static_cast<ssize_t>(junk.size()));
    AcceptHandshake acc(p.a, key, 0x80002, false);
    EXPECT_EQ(RunAcceptor(acc), AcceptHandshake::State::kFailed);
    EXPECT_NE(acc.error().find("not an mpvm task link"), std::string::npos);
  }
}

TEST(TaskLink, AnEncryptingAcceptorRefusesAPlainLink) {
  Pair p;
  const LinkKey key = DeriveLinkKey("k");
  auto connector =
      std::async(std::launch::async, [&] { return ConnectHandshake(p.c, key, 1, 2, false, 2000); });
  AcceptHandshake acc(p.a, key, 2, /*require_encrypt=*/true);
  EXPECT_EQ(RunAcceptor(acc), AcceptHandshake::State::kFailed);
  close(p.a);
  p.a = -1;
  EXPECT_FALSE(connector.get().ok);
}

TEST(TaskLink, EncryptedFramesArriveAndTamperingIsCaught) {
  Pair p;
  const LinkKey key = DeriveLinkKey("secret-of-the-vm");
  auto connector =
      std::async(std::launch::async, [&] { return ConnectHandshake(p.c, key, 1, 2, true, 5000); });
  AcceptHandshake acc(p.a, key, 2, false);
  ASSERT_EQ(RunAcceptor(acc), AcceptHandshake::State::kDone);
  auto res = connector.get();
  ASSERT_TRUE(res.ok);
  ASSERT_NE(res.cipher, nullptr);
  Connection out(p.c), in(p.a);
  p.c = p.a = -1;  // owned by the connections now
  out.EnableCipher(std::move(res.cipher));
  in.EnableCipher(acc.TakeCipher());
  // Frames of several sizes, both ways round trip through the cipher.
  for (size_t size : {size_t{0}, size_t{1}, size_t{1000}, size_t{200000}}) {
    std::vector<uint8_t> body(size);
    for (size_t i = 0; i < size; ++i) body[i] = static_cast<uint8_t>(i * 7);
    FrameHeader h;
    h.kind = FrameKind::kData;
    h.src = 1;
    h.dst = 2;
    h.tag = static_cast<int32_t>(size);
    ASSERT_TRUE(out.Send(h, body));
    Frame f;
    for (int spins = 0; spins < 1000; ++spins) {
      if (out.wants_write()) out.Flush();
      pollfd pf{in.fd(), POLLIN, 0};
      poll(&pf, 1, 100);
      ASSERT_EQ(in.ReadAvailable(), Connection::ReadResult::kOk);
      if (in.reader().Next(f) == FrameReader::Status::kFrame) break;
    }
    EXPECT_EQ(f.header.tag, static_cast<int32_t>(size));
    EXPECT_EQ(f.payload, body);
  }
  // A flipped bit in a sealed record is refused, not delivered.
  LinkCipher a(std::array<uint8_t, 32>{1}, std::array<uint8_t, 32>{2});
  LinkCipher b(std::array<uint8_t, 32>{2}, std::array<uint8_t, 32>{1});
  std::vector<uint8_t> rec, plain;
  const std::vector<uint8_t> msg = {1, 2, 3, 4};
  a.Seal(msg, rec);
  rec[6] ^= 1;
  EXPECT_FALSE(b.Open(std::span(rec).subspan(4), plain));
  // A replayed record (same counter) is refused too.
  LinkCipher c(std::array<uint8_t, 32>{1}, std::array<uint8_t, 32>{2});
  LinkCipher d(std::array<uint8_t, 32>{2}, std::array<uint8_t, 32>{1});
  std::vector<uint8_t> r1;
  c.Seal(msg, r1);
  EXPECT_TRUE(d.Open(std::span(r1).subspan(4), plain));
  EXPECT_EQ(plain, msg);
  EXPECT_FALSE(d.Open(std::span(r1).subspan(4), plain));
}

}  // namespace
}  // namespace mpvm
