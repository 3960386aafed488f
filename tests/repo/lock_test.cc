#include "repo/lock.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <utility>

#include "tests/support/faulty_backend.h"
#include "tests/support/mem_backend.h"

namespace fsb::repo {
namespace {

using ::testing::HasSubstr;

class LockTest : public ::testing::Test {
 protected:
  LockTest() {
    InitOptions o;
    o.scrypt_n = 1024;
    auto mem = std::make_unique<testing::MemBackend>();
    mem_ = mem.get();
    repo_ = std::move(*Repository::Init(std::move(mem), Secret<std::string>("pw"), o));
  }
  Id PlantLock(LockInfo l) {
    std::string j = EncodeLock(l);
    return *repo_->SaveUnpacked(FileType::kLock, AsBytes(j));
  }
  LockInfo Other(bool exclusive, int64_t age_sec) {
    LockInfo l;
    l.time = Timestamp{time(nullptr) - age_sec, 0, 0};
    l.exclusive = exclusive;
    l.hostname = "another-host";
    l.username = "u";
    l.pid = 4242;
    return l;
  }
  testing::MemBackend* mem_;
  std::unique_ptr<Repository> repo_;
};

TEST_F(LockTest, LockFileFormatRoundTrips) {
  LockInfo l = Other(true, 0);
  l.uid = 1000;
  std::string j = EncodeLock(l);
  EXPECT_NE(j.find("\"exclusive\":true,\"hostname\":\"another-host\",\"username\":\"u\",\"pid\":"
                   "4242,\"uid\":1000"),
            std::string::npos);
  LockInfo back = *DecodeLock(AsBytes(j));
  EXPECT_EQ(back.pid, 4242);
  EXPECT_TRUE(back.exclusive);
  EXPECT_EQ(back.uid, 1000u);
}

TEST_F(LockTest, SharedLocksCoexistAndAreRemovedOnRelease) {
  {
    auto a = RepoLock::Acquire(*repo_, false);
    ASSERT_TRUE(a.ok()) << a.status().ToString();
    auto b = RepoLock::Acquire(*repo_, false);
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    EXPECT_EQ(ListLocks(*repo_)->size(), 2u);
  }
  EXPECT_EQ(ListLocks(*repo_)->size(), 0u);
}

TEST_F(LockTest, FreshExclusiveLockBlocksAndNamesHolder) {
  PlantLock(Other(true, 60));
  auto l = RepoLock::Acquire(*repo_, false);
  ASSERT_FALSE(l.ok());
  EXPECT_EQ(l.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(l.status().message(), HasSubstr("already locked exclusively"));
  EXPECT_THAT(l.status().message(), HasSubstr("PID 4242 on host another-host"));
  // Nothing of ours is left behind.
  EXPECT_EQ(ListLocks(*repo_)->size(), 1u);
}

TEST_F(LockTest, BackgroundConfirmationHoldsWritesUntilTheSecondLookPassed) {
  LockOptions o;
  o.confirm_in_background = true;
  auto l = RepoLock::Acquire(*repo_, false, o);
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  // A write waits for the second look, then goes through; reads never waited.
  Result<Id> saved = repo_->SaveUnpacked(FileType::kSnapshot, AsBytes(std::string("{}")));
  ASSERT_TRUE(saved.ok()) << saved.status().ToString();
  EXPECT_TRUE((*l)->WaitConfirmed().ok());
  EXPECT_EQ(ListLocks(*repo_)->size(), 1u);
  l->reset();
  EXPECT_EQ(ListLocks(*repo_)->size(), 0u);
  // The barrier left with the lock.
  EXPECT_TRUE(repo_->SaveUnpacked(FileType::kSnapshot, AsBytes(std::string("{\"a\":1}"))).ok());
}

TEST_F(LockTest, ExclusiveLockerRacingABackgroundConfirmationStopsEveryWrite) {
  LockOptions o;
  o.confirm_in_background = true;
  auto l = RepoLock::Acquire(*repo_, false, o);
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  // A prune that wrote its lock after our first look: the second look must see it.
  PlantLock(Other(true, 0));
  Result<Id> saved = repo_->SaveUnpacked(FileType::kSnapshot, AsBytes(std::string("{}")));
  ASSERT_FALSE(saved.ok());
  EXPECT_EQ(saved.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(saved.status().message(), HasSubstr("already locked exclusively"));
  EXPECT_EQ(repo_->PassWriteBarrier().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ((*l)->WaitConfirmed().code(), StatusCode::kFailedPrecondition);
  // Our lock file is gone at once (the prune may go on); only the prune's is left.
  auto locks = ListLocks(*repo_);
  ASSERT_EQ(locks->size(), 1u);
  EXPECT_TRUE(locks->front().second.exclusive);
  bool snapshot_written = false;
  ASSERT_TRUE(mem_->List(FileType::kSnapshot,
                         [&](const FileInfo&) {
                           snapshot_written = true;
                           return Status::Ok();
                         })
                  .ok());
  EXPECT_FALSE(snapshot_written);
}

TEST_F(LockTest, RetryingLockerLooksTwiceBeforeReturningEvenIfAskedForTheBackground) {
  LockOptions o;
  o.confirm_in_background = true;
  o.retry_for = std::chrono::seconds(5);
  auto l = RepoLock::Acquire(*repo_, false, o);
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  // Confirmed before Acquire returned: no write barrier, so an exclusive locker arriving now is
  // the one that must back off (its own second look sees us), not us.
  PlantLock(Other(true, 0));
  EXPECT_TRUE((*l)->WaitConfirmed().ok());
  EXPECT_TRUE(repo_->SaveUnpacked(FileType::kSnapshot, AsBytes(std::string("{}"))).ok());
}

// A backend with consistent listing (one kernel's file system) whose lock saves can let a racing
// locker write its lock file right after ours: between our first look and our second.
class RacingLockBackend : public testing::MemBackend {
 public:
  RacingLockBackend() : MemBackend({.consistent_listing = true}) {}
  std::function<void()> after_lock_save;
  Status Save(const Handle& h, ByteView data) override {
    Status s = MemBackend::Save(h, data);
    if (s.ok() && h.type == FileType::kLock && after_lock_save) {
      auto racer = std::exchange(after_lock_save, nullptr);
      racer();
    }
    return s;
  }
};

class ConsistentListingLockTest : public LockTest {
 protected:
  ConsistentListingLockTest() {
    InitOptions o;
    o.scrypt_n = 1024;
    auto be = std::make_unique<RacingLockBackend>();
    be_ = be.get();
    repo_ = std::move(*Repository::Init(std::move(be), Secret<std::string>("pw"), o));
    mem_ = be_;
  }
  // What a prune that passed its first look together with us writes.
  void RaceAnExclusiveLocker() {
    be_->after_lock_save = [this] { PlantLock(Other(true, 0)); };
  }
  RacingLockBackend* be_;
};

TEST_F(ConsistentListingLockTest, SecondLookIsStillTakenWithoutTheWait) {
  RaceAnExclusiveLocker();
  auto l = RepoLock::Acquire(*repo_, false);
  ASSERT_FALSE(l.ok());
  EXPECT_EQ(l.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(l.status().message(), HasSubstr("already locked exclusively"));
  auto locks = ListLocks(*repo_);  // ours was removed, the racer's stays
  ASSERT_EQ(locks->size(), 1u);
  EXPECT_TRUE(locks->front().second.exclusive);
}

TEST_F(ConsistentListingLockTest, BackgroundSecondLookStillStopsEveryWrite) {
  LockOptions o;
  o.confirm_in_background = true;
  RaceAnExclusiveLocker();
  auto l = RepoLock::Acquire(*repo_, false, o);
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  Result<Id> saved = repo_->SaveUnpacked(FileType::kSnapshot, AsBytes(std::string("{}")));
  ASSERT_FALSE(saved.ok());
  EXPECT_EQ(saved.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ((*l)->WaitConfirmed().code(), StatusCode::kFailedPrecondition);
}

TEST_F(ConsistentListingLockTest, LockerWithoutARacerIsConfirmed) {
  LockOptions o;
  o.confirm_in_background = true;
  auto l = RepoLock::Acquire(*repo_, false, o);
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  EXPECT_TRUE((*l)->WaitConfirmed().ok());
  EXPECT_TRUE(repo_->SaveUnpacked(FileType::kSnapshot, AsBytes(std::string("{}"))).ok());
  auto x = RepoLock::Acquire(*repo_, true);  // an exclusive locker now sees our shared lock
  EXPECT_EQ(x.status().code(), StatusCode::kFailedPrecondition);
}

TEST_F(LockTest, SharedLockBlocksExclusiveOnly) {
  PlantLock(Other(false, 60));
  EXPECT_TRUE(RepoLock::Acquire(*repo_, false).ok());
  EXPECT_FALSE(RepoLock::Acquire(*repo_, true).ok());
}

TEST_F(LockTest, StaleLocksDoNotBlock) {
  PlantLock(Other(true, 31 * 60));  // older than 30 minutes
  LockInfo dead = Other(true, 10);
  dead.hostname = Hostname();
  dead.pid = 0x3ffffff0;  // no such process
  PlantLock(dead);
  auto l = RepoLock::Acquire(*repo_, true);
  EXPECT_TRUE(l.ok()) << l.status().ToString();
}

TEST_F(LockTest, UnlockRemovesOnlyStaleUnlessAll) {
  PlantLock(Other(true, 31 * 60));
  PlantLock(Other(false, 10));
  EXPECT_EQ(*RemoveLocks(*repo_, false), 1);
  EXPECT_EQ(ListLocks(*repo_)->size(), 1u);
  EXPECT_EQ(*RemoveLocks(*repo_, true), 1);
  EXPECT_EQ(ListLocks(*repo_)->size(), 0u);
}

TEST_F(LockTest, RemoveAllAlsoRemovesUnreadableLocks) {
  PlantLock(Other(false, 10));
  Bytes junk = Seal(repo_->key(), AsBytes("not json"));
  ASSERT_TRUE(mem_->Save(Handle{FileType::kLock, Id::Hash(junk).Hex()}, junk).ok());
  EXPECT_EQ(ListLocks(*repo_)->size(), 1u);  // the unreadable one is not a lock anyone honours
  EXPECT_EQ(*RemoveLocks(*repo_, true), 2);
  int left = 0;
  ASSERT_TRUE(mem_->List(FileType::kLock,
                         [&](const FileInfo&) {
                           left++;
                           return Status::Ok();
                         })
                  .ok());
  EXPECT_EQ(left, 0);
}

TEST_F(LockTest, RetryWaitsForTheHolderToGo) {
  Id planted = PlantLock(Other(true, 10));
  std::jthread remover([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    mem_->Remove(Handle{FileType::kLock, planted.Hex()}).IgnoreError();  // the holder finishes
  });
  auto l = RepoLock::Acquire(*repo_, false, std::chrono::seconds(10));
  EXPECT_TRUE(l.ok()) << l.status().ToString();
}

TEST_F(LockTest, RetryLockFailsNamingTheHolder) {
  LockInfo held = Other(true, 75);
  held.username = "alice";
  PlantLock(held);
  LockOptions o;
  o.retry_for = std::chrono::milliseconds(600);
  auto l = RepoLock::Acquire(*repo_, false, o);
  ASSERT_FALSE(l.ok());
  EXPECT_EQ(l.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(l.status().message(),
              HasSubstr("PID 4242 on host another-host by user alice (age 1m1"));
  EXPECT_THAT(l.status().message(), HasSubstr("exclusive"));
}

TEST_F(LockTest, KnownDeadHolderIsStaleAtOnce) {
  LockInfo gone = Other(true, 5);  // fresh: only the predicate can make it stale
  gone.hostname = "backup-pod-7f9c";
  PlantLock(gone);
  EXPECT_FALSE(RepoLock::Acquire(*repo_, false).ok());
  LockOptions o;
  o.is_stale_holder = [](const LockInfo& l) { return l.hostname == "backup-pod-7f9c"; };
  {
    auto l = RepoLock::Acquire(*repo_, true, o);
    EXPECT_TRUE(l.ok()) << l.status().ToString();
  }
  // unlock: without the predicate the lock is fresh and stays; with it, it goes.
  EXPECT_EQ(*RemoveLocks(*repo_, false), 0);
  EXPECT_EQ(*RemoveLocks(*repo_, false, o), 1);
  EXPECT_EQ(ListLocks(*repo_)->size(), 0u);
}

TEST_F(LockTest, ExclusiveLockConflictsWithEveryFreshLock) {
  PlantLock(Other(false, 5));
  auto l = RepoLock::Acquire(*repo_, true);
  ASSERT_FALSE(l.ok());
  EXPECT_THAT(l.status().message(), HasSubstr("repository is already locked by PID 4242"));
}

TEST_F(LockTest, RefreshWritesANewLockFileThenRemovesTheOld) {
  auto l = RepoLock::Acquire(*repo_, true);  // the timer (5 minutes) stays out of the way
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  const Id first = (*l)->id();
  const Timestamp first_time = ListLocks(*repo_)->front().second.time;
  testing::MemBackend* mem = mem_;
  ASSERT_TRUE((*l)->Refresh().ok());
  auto locks = ListLocks(*repo_);
  ASSERT_EQ(locks->size(), 1u);
  EXPECT_NE(locks->front().first, first);
  EXPECT_EQ(locks->front().first, (*l)->id());
  EXPECT_TRUE(locks->front().second.exclusive);
  EXPECT_NE(locks->front().second.time, first_time);
  EXPECT_FALSE(mem->Contains(Handle{FileType::kLock, first.Hex()}));
  EXPECT_TRUE((*l)->Valid().ok());
  l->reset();
  EXPECT_EQ(ListLocks(*repo_)->size(), 0u);
}

TEST_F(LockTest, RefresherRewritesTheLockOnItsTimer) {
  LockOptions o;
  o.refresh_interval = std::chrono::milliseconds(50);
  auto l = RepoLock::Acquire(*repo_, false, o);
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  const Id first = (*l)->id();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while ((*l)->id() == first && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_NE((*l)->id(), first);
  l->reset();
  EXPECT_EQ(ListLocks(*repo_)->size(), 0u);
}

TEST(LockValidTest, LockThatCannotBeRefreshedBecomesInvalid) {
  testing::MemBackend mem;
  InitOptions init;
  init.scrypt_n = 1024;
  auto faulty = std::make_unique<testing::FaultyBackend>(mem);
  testing::FaultyBackend* fb = faulty.get();
  auto repo = std::move(*Repository::Init(std::move(faulty), Secret<std::string>("pw"), init));
  LockOptions o;
  o.refresh_interval = std::chrono::milliseconds(40);
  o.stale_age = std::chrono::milliseconds(400);  // invalid 400 - 60 = 340 ms after the last write
  auto l = RepoLock::Acquire(*repo, true, o);
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  EXPECT_TRUE((*l)->Valid().ok());
  fb->FailAlways(testing::BackendOp::kSave, Status::Unavailable("backend down"));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while ((*l)->Valid().ok() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  Status v = (*l)->Valid();
  EXPECT_EQ(v.code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(v.message(), HasSubstr("stale"));
  fb->ClearFaults();
}

}  // namespace
}  // namespace fsb::repo
