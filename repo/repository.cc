#include "repo/repository.h"

#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/sysinfo.h"
#include "repo/key.h"
#include "repo/polynomial.h"

namespace fsb::repo {
namespace {

using json = nlohmann::json;

// restic tries at most 20 key files before giving up (§3).
constexpr int kMaxKeysTried = 20;

}  // namespace

std::string EncodeConfig(const Config& c) {
  std::string out = "{\"version\":" + std::to_string(c.version) + ",\"id\":";
  AppendGoJsonString(c.id, out);
  out += ",\"chunker_polynomial\":";
  AppendGoJsonString(fmt::format("{:x}", c.chunker_polynomial), out);
  out += '}';
  return out;
}

Result<Config> DecodeConfig(ByteView data) {
  json j = json::parse(data.begin(), data.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Status::Corruption("config: malformed JSON");
  Config c;
  auto v = j.find("version");
  if (v == j.end() || !v->is_number_unsigned()) return Status::Corruption("config: missing version");
  if (v->get<uint64_t>() != 1 && v->get<uint64_t>() != 2) {
    return Status::FailedPrecondition(
        fmt::format("unsupported repository version {}", v->get<uint64_t>()));
  }
  c.version = static_cast<uint32_t>(v->get<uint64_t>());
  auto id = j.find("id");
  if (id == j.end() || !id->is_string()) return Status::Corruption("config: missing id");
  c.id = id->get<std::string>();
  auto poly = j.find("chunker_polynomial");
  if (poly == j.end() || !poly->is_string()) {
    return Status::Corruption("config: missing chunker_polynomial");
  }
  Result<Polynomial> p = Polynomial::Parse(poly->get_ref<const std::string&>());
  if (!p.ok()) return Status::Corruption("config: " + p.status().message());
  c.chunker_polynomial = p->value();
  return c;
}

Repository::Repository(std::unique_ptr<Backend> backend, CryptoKey key, Config config,
                       RepositoryOptions options)
    : backend_(std::move(backend)),
      key_(key),
      config_(std::move(config)),
      options_(options) {}

Result<std::unique_ptr<Repository>> Repository::Open(std::unique_ptr<Backend> backend,
                                                     const Secret<std::string>& password,
                                                     const RepositoryOptions& options) {
  const std::string where = backend->Location();
  Result<Bytes> config_sealed = backend->Load(Handle::Config(), 0, 0);
  if (!config_sealed.ok()) {
    if (config_sealed.status().code() == StatusCode::kNotFound) {
      return Status::NotFound(fmt::format("repository {}: no config file (not a repository?): {}", where,
                                          config_sealed.status().message()));
    }
    return config_sealed.status().WithContext(fmt::format("repository {}: load config", where));
  }
  std::vector<FileInfo> keys;
  FSB_RETURN_IF_ERROR(backend->List(FileType::kKey, [&](const FileInfo& fi) {
    keys.push_back(fi);
    return Status::Ok();
  }).WithContext(fmt::format("repository {}: list keys", where)));
  std::sort(keys.begin(), keys.end(), [](auto& a, auto& b) { return a.name < b.name; });
  std::optional<CryptoKey> master;
  Status last_error;
  int tried = 0;
  for (const FileInfo& fi : keys) {
    if (tried++ >= kMaxKeysTried) break;
    Handle h{FileType::kKey, fi.name};
    Result<Bytes> raw = backend->Load(h, 0, 0);
    if (!raw.ok()) {
      last_error = raw.status().WithContext("key " + fi.name.substr(0, 8));
      continue;
    }
    Result<KeyFile> kf = DecodeKeyFile(*raw);
    if (!kf.ok()) {
      last_error = kf.status().WithContext("key " + fi.name.substr(0, 8));
      continue;
    }
    Result<CryptoKey> k = OpenKeyFile(*kf, password.Reveal());
    if (k.ok()) {
      master = *k;
      break;
    }
    if (k.status().code() != StatusCode::kPermissionDenied) {
      last_error = k.status().WithContext("key " + fi.name.substr(0, 8));
    }
  }
  if (!master) {
    std::string msg = fmt::format("repository {}: wrong password or no key found", where);
    if (!last_error.ok()) msg += " (" + last_error.message() + ")";
    return Status::PermissionDenied(msg);
  }
  Result<Bytes> config_plain = repo::Open(*master, *config_sealed);
  if (!config_plain.ok()) return config_plain.status().WithContext(fmt::format("repository {}: config", where));
  FSB_ASSIGN_OR_RETURN(Config config, DecodeConfig(*config_plain));
  return std::unique_ptr<Repository>(
      new Repository(std::move(backend), *master, std::move(config), options));
}

Result<std::unique_ptr<Repository>> Repository::Init(std::unique_ptr<Backend> backend,
                                                     const Secret<std::string>& password,
                                                     const InitOptions& init,
                                                     const RepositoryOptions& options) {
  const std::string where = backend->Location();
  if (init.version != 1 && init.version != 2) {
    return Status::InvalidArgument(fmt::format("unsupported repository version {}", init.version));
  }
  Result<uint64_t> existing = backend->Size(Handle::Config());
  if (existing.ok()) {
    return Status::AlreadyExists(fmt::format("repository {}: config already exists", where));
  }
  if (existing.status().code() != StatusCode::kNotFound) return existing.status();
  FSB_RETURN_IF_ERROR(backend->Create().WithContext(fmt::format("repository {}: create", where)));

  Config config;
  config.version = init.version;
  Bytes rid(32);
  RandomBytes(rid);
  config.id = HexEncode(rid);
  if (init.chunker_polynomial != 0) {
    FSB_ASSIGN_OR_RETURN(Polynomial p, Polynomial::Parse(fmt::format("{:x}", init.chunker_polynomial)));
    config.chunker_polynomial = p.value();
  } else {
    config.chunker_polynomial = Polynomial::Random().value();
  }
  CryptoKey master = CryptoKey::Random();
  KeyParams params;
  params.n = init.scrypt_n;
  params.r = init.scrypt_r;
  params.p = init.scrypt_p;
  Timestamp now = LocalTimestamp(time(nullptr), 0);
  FSB_ASSIGN_OR_RETURN(KeyFile kf, CreateKeyFile(master, password.Reveal(), params,
                                                 FormatTimestamp(now), UserName(), HostName()));
  std::string key_json = EncodeKeyFile(kf);
  Id key_id = Id::Hash(AsBytes(key_json));
  FSB_RETURN_IF_ERROR(backend->Save(Handle{FileType::kKey, key_id.Hex()}, AsBytes(key_json)));
  std::string config_json = EncodeConfig(config);
  Bytes sealed = Seal(master, AsBytes(config_json));
  FSB_RETURN_IF_ERROR(backend->Save(Handle::Config(), sealed));
  return std::unique_ptr<Repository>(
      new Repository(std::move(backend), master, std::move(config), options));
}

Result<Bytes> Repository::LoadUnpacked(FileType type, const Id& id) {
  const std::string what = fmt::format("{} {}", FileTypeName(type), id.Short());
  Handle h{type, id.Hex()};
  Result<Bytes> raw = backend_->Load(h, 0, 0);
  if (!raw.ok()) return raw.status().WithContext("load " + what);
  if (raw->empty()) return Status::Corruption("load " + what + ": empty file");
  if (Id::Hash(*raw) != id) return Status::Corruption("load " + what + ": content does not match its name");
  Result<Bytes> plain = repo::Open(key_, *raw);
  if (!plain.ok()) return plain.status().WithContext("load " + what);
  Result<Bytes> decoded = DecodeUnpacked(*plain, config_.version);
  if (!decoded.ok()) return decoded.status().WithContext("load " + what);
  return decoded;
}

void Repository::SetWriteBarrier(std::function<Status()> barrier) {
  std::lock_guard l(barrier_mu_);
  barrier_passed_.store(!barrier, std::memory_order_release);
  write_barrier_ = std::move(barrier);
}

Status Repository::PassWriteBarrier() {
  if (barrier_passed_.load(std::memory_order_acquire)) return Status::Ok();
  std::function<Status()> barrier;
  {
    std::lock_guard l(barrier_mu_);
    barrier = write_barrier_;
  }
  if (!barrier) return Status::Ok();
  Status s = barrier();
  if (s.ok()) barrier_passed_.store(true, std::memory_order_release);
  return s;
}

Result<Id> Repository::SaveUnpacked(FileType type, ByteView json) {
  if (type != FileType::kLock) FSB_RETURN_IF_ERROR(PassWriteBarrier());
  Bytes plain = EncodeUnpacked(json, config_.version);
  Bytes sealed = Seal(key_, plain);
  Id id = Id::Hash(sealed);
  Status s = backend_->Save(Handle{type, id.Hex()}, sealed);
  if (!s.ok()) return s.WithContext(fmt::format("save {} {}", FileTypeName(type), id.Short()));
  return id;
}

Status Repository::LoadIndex() {
  std::vector<Id> ids;
  FSB_RETURN_IF_ERROR(backend_->List(FileType::kIndex, [&](const FileInfo& fi) {
    Result<Id> id = Id::FromHex(fi.name);
    if (id.ok()) ids.push_back(*id);
    return Status::Ok();
  }));
  std::sort(ids.begin(), ids.end());
  std::atomic<size_t> next{0};
  std::mutex err_mu;
  Status first_error;  // guarded by err_mu
  auto worker = [&] {
    for (;;) {
      size_t i = next.fetch_add(1);
      if (i >= ids.size()) return;
      {
        std::lock_guard l(err_mu);
        if (!first_error.ok()) return;
      }
      Result<Bytes> plain = LoadUnpacked(FileType::kIndex, ids[i]);
      Result<IndexFile> f = plain.ok() ? DecodeIndexFile(*plain, config_.version)
                                       : Result<IndexFile>(plain.status());
      if (!f.ok()) {
        std::lock_guard l(err_mu);
        if (first_error.ok()) {
          first_error = plain.ok() ? f.status().WithContext("index " + ids[i].Short()) : f.status();
        }
        return;
      }
      std::unique_lock lock(index_mu_);
      for (const auto& p : f->packs) {
        for (const auto& b : p.blobs) index_.Add(p.id, b);
      }
    }
  };
  {
    int n = std::max(1, std::min<int>(options_.index_load_threads, static_cast<int>(ids.size())));
    std::vector<std::jthread> threads;
    for (int t = 0; t < n; t++) threads.emplace_back(worker);
  }
  FSB_RETURN_IF_ERROR(first_error);
  std::unique_lock lock(index_mu_);
  index_files_ = std::move(ids);
  return Status::Ok();
}

std::optional<BlobLocation> Repository::FindBlob(BlobType type, const Id& id) const {
  std::shared_lock lock(index_mu_);
  return index_.Find(type, id);
}

bool Repository::HasBlob(BlobType type, const Id& id) const {
  std::shared_lock lock(index_mu_);
  return index_.Has(type, id);
}

size_t Repository::IndexSize() const {
  std::shared_lock lock(index_mu_);
  return index_.size();
}

void Repository::ForEachBlob(const std::function<void(const BlobLocation&)>& fn) const {
  std::shared_lock lock(index_mu_);
  index_.ForEach(fn);
}

void Repository::AddToIndex(const Id& pack, const std::vector<PackedBlob>& blobs) {
  std::unique_lock lock(index_mu_);
  for (const auto& b : blobs) {
    index_.Add(pack, b);
    reserved_[static_cast<int>(b.type)].erase(b.id);
  }
}

std::vector<Id> Repository::LoadedIndexFiles() const {
  std::shared_lock lock(index_mu_);
  return index_files_;
}

bool Repository::ReserveBlob(BlobType type, const Id& id, uint64_t writer) {
  {
    std::shared_lock lock(index_mu_);
    if (index_.Has(type, id) || reserved_[static_cast<int>(type)].count(id)) return false;
  }
  std::unique_lock lock(index_mu_);
  if (index_.Has(type, id)) return false;
  return reserved_[static_cast<int>(type)].emplace(id, writer).second;
}

void Repository::ReleaseReservations(uint64_t writer) {
  std::unique_lock lock(index_mu_);
  for (auto& reserved : reserved_)
    std::erase_if(reserved, [&](const auto& r) { return r.second == writer; });
}

Result<std::shared_ptr<const Bytes>> Repository::LoadTreePack(const Id& id) {
  {
    std::lock_guard l(tree_cache_mu_);
    for (auto it = tree_cache_.begin(); it != tree_cache_.end(); ++it) {
      if (it->first == id) {
        tree_cache_.splice(tree_cache_.begin(), tree_cache_, it);
        return tree_cache_.front().second;
      }
    }
  }
  FSB_ASSIGN_OR_RETURN(Bytes data, backend_->Load(Handle{FileType::kPack, id.Hex()}, 0, 0));
  auto shared = std::make_shared<const Bytes>(std::move(data));
  std::lock_guard l(tree_cache_mu_);
  tree_cache_.emplace_front(id, shared);
  tree_cache_bytes_ += shared->size();
  while (tree_cache_bytes_ > options_.tree_pack_cache_bytes && tree_cache_.size() > 1) {
    tree_cache_bytes_ -= tree_cache_.back().second->size();
    tree_cache_.pop_back();
  }
  return shared;
}

Result<Bytes> Repository::LoadBlob(BlobType type, const Id& id) {
  std::optional<BlobLocation> loc = FindBlob(type, id);
  if (!loc) {
    return Status::NotFound(fmt::format("{} blob {} not found in index", BlobTypeName(type), id.Short()));
  }
  if (type == BlobType::kTree && options_.tree_pack_cache_bytes > 0) {
    Result<std::shared_ptr<const Bytes>> pack = LoadTreePack(loc->pack);
    if (!pack.ok()) {
      return pack.status().WithContext(fmt::format("load tree blob {} from pack {}", id.Short(), loc->pack.Short()));
    }
    const Bytes& p = **pack;
    if (uint64_t(loc->blob.offset) + loc->blob.length > p.size()) {
      return Status::Corruption(fmt::format("pack {}: tree blob {} lies beyond the pack's end", loc->pack.Short(),
                                            id.Short()));
    }
    Result<Bytes> plain = DecodeBlob(key_, loc->blob, ByteView(p).subspan(loc->blob.offset, loc->blob.length));
    if (!plain.ok()) return plain.status().WithContext(fmt::format("pack {}", loc->pack.Short()));
    return plain;
  }
  Result<Bytes> stored =
      backend_->Load(Handle{FileType::kPack, loc->pack.Hex()}, loc->blob.offset, loc->blob.length);
  if (!stored.ok()) {
    return stored.status().WithContext(
        fmt::format("load {} blob {} from pack {}", BlobTypeName(type), id.Short(), loc->pack.Short()));
  }
  Result<Bytes> plain = DecodeBlob(key_, loc->blob, *stored);
  if (!plain.ok()) return plain.status().WithContext(fmt::format("pack {}", loc->pack.Short()));
  return plain;
}

Result<std::vector<Node>> Repository::LoadTree(const Id& id) {
  FSB_ASSIGN_OR_RETURN(Bytes data, LoadBlob(BlobType::kTree, id));
  Result<std::vector<Node>> nodes = DecodeTree(data);
  if (!nodes.ok()) return nodes.status().WithContext("tree " + id.Short());
  return nodes;
}

Result<std::vector<Id>> Repository::ListSnapshotIds() {
  std::vector<Id> ids;
  FSB_RETURN_IF_ERROR(backend_->List(FileType::kSnapshot, [&](const FileInfo& fi) {
    Result<Id> id = Id::FromHex(fi.name);
    if (id.ok()) ids.push_back(*id);
    return Status::Ok();
  }));
  std::sort(ids.begin(), ids.end());
  return ids;
}

Result<Snapshot> Repository::LoadSnapshot(const Id& id) {
  FSB_ASSIGN_OR_RETURN(Bytes data, LoadUnpacked(FileType::kSnapshot, id));
  Result<Snapshot> s = DecodeSnapshot(data);
  if (!s.ok()) return s.status().WithContext("snapshot " + id.Short());
  return s;
}

Result<Id> Repository::SaveSnapshot(const Snapshot& s) {
  std::string json = EncodeSnapshot(s);
  return SaveUnpacked(FileType::kSnapshot, AsBytes(json));
}

Result<Id> Repository::FindSnapshot(std::string_view ref) {
  FSB_ASSIGN_OR_RETURN(std::vector<Id> ids, ListSnapshotIds());
  if (ref == "latest") {
    std::optional<Id> best;
    Timestamp best_time;
    for (const Id& id : ids) {
      FSB_ASSIGN_OR_RETURN(Snapshot s, LoadSnapshot(id));
      if (!best || s.time.sec > best_time.sec ||
          (s.time.sec == best_time.sec && s.time.nsec > best_time.nsec)) {
        best = id;
        best_time = s.time;
      }
    }
    if (!best) return Status::NotFound("no snapshot found (latest)");
    return *best;
  }
  std::string lower(ref);
  std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
  if (lower.empty() || lower.size() > 64 ||
      lower.find_first_not_of("0123456789abcdef") != std::string::npos) {
    return Status::InvalidArgument(fmt::format("invalid snapshot id \"{}\"", ref));
  }
  std::optional<Id> found;
  for (const Id& id : ids) {
    if (id.Hex().compare(0, lower.size(), lower) == 0) {
      if (found) return Status::InvalidArgument(fmt::format("snapshot id prefix \"{}\" is ambiguous", ref));
      found = id;
    }
  }
  if (!found) return Status::NotFound(fmt::format("no snapshot matches \"{}\"", ref));
  return *found;
}

}  // namespace fsb::repo
