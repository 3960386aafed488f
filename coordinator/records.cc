#include "coordinator/records.h"

#include <fmt/format.h>
#include <zlib.h>

namespace fsb::coordinator {
namespace {

Status WriteJsonArray(repo::ObjectStore& store, const std::string& key,
                      const std::vector<kube::Object>& items) {
  kube::Object arr = kube::Object::array();
  for (const kube::Object& o : items) arr.push_back(o);
  const std::string text = arr.dump();
  FSB_ASSIGN_OR_RETURN(Bytes gz, Gzip(AsBytes(text)));
  return store.Put(key, gz).WithContext("write " + key);
}

Result<std::vector<kube::Object>> ReadJsonArray(repo::ObjectStore& store, const std::string& key) {
  Result<Bytes> raw = store.Get(key);
  if (!raw.ok()) return raw.status().WithContext("read " + key);
  Result<Bytes> text = Gunzip(*raw);
  if (!text.ok()) return text.status().WithContext(key);
  kube::Object arr = kube::Object::parse(AsString(*text), nullptr, false);
  if (arr.is_discarded() || !arr.is_array()) {
    return Status::Corruption(fmt::format("{}: not a JSON array", key));
  }
  std::vector<kube::Object> out;
  for (kube::Object& o : arr) {
    if (!o.is_object()) return Status::Corruption(fmt::format("{}: an item is not an object", key));
    out.push_back(std::move(o));
  }
  return out;
}

}  // namespace

Result<Bytes> Gzip(ByteView data) {
  z_stream zs{};
  // windowBits 15 + 16: a gzip header and trailer rather than zlib's.
  if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
      Z_OK) {
    return Status::Internal("gzip: deflateInit2 failed");
  }
  Bytes out(deflateBound(&zs, data.size()) + 32);
  zs.next_in = const_cast<Bytef*>(data.data());
  zs.avail_in = static_cast<uInt>(data.size());
  zs.next_out = out.data();
  zs.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&zs, Z_FINISH);
  const uint64_t n = zs.total_out;
  deflateEnd(&zs);
  if (rc != Z_STREAM_END) return Status::Internal(fmt::format("gzip: deflate returned {}", rc));
  out.resize(n);
  return out;
}

Result<Bytes> Gunzip(ByteView data, uint64_t max_bytes) {
  z_stream zs{};
  if (inflateInit2(&zs, 15 + 16) != Z_OK) return Status::Internal("gunzip: inflateInit2 failed");
  struct End {
    z_stream* z;
    ~End() { inflateEnd(z); }
  } end{&zs};
  zs.next_in = const_cast<Bytef*>(data.data());
  zs.avail_in = static_cast<uInt>(data.size());
  Bytes out;
  uint8_t buf[64 << 10];
  while (true) {
    zs.next_out = buf;
    zs.avail_out = sizeof buf;
    const int rc = inflate(&zs, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) {
      return Status::Corruption(fmt::format(
          "gunzip: {}", zs.msg ? zs.msg : (rc == Z_BUF_ERROR ? "truncated" : "bad data")));
    }
    out.insert(out.end(), buf, buf + (sizeof buf - zs.avail_out));
    if (out.size() > max_bytes) {
      return Status::ResourceExhausted(fmt::format("gunzip: more than {} bytes", max_bytes));
    }
    if (rc == Z_STREAM_END) break;
    if (zs.avail_in == 0 && zs.avail_out != 0) return Status::Corruption("gunzip: truncated");
  }
  if (zs.avail_in != 0) return Status::Corruption("gunzip: trailing data after the stream");
  return out;
}

std::string BackupRecordKey(std::string_view backup) {
  return fmt::format("backups/{}/velero-backup.json", backup);
}
std::string PodVolumeBackupsRecordKey(std::string_view backup) {
  return fmt::format("backups/{0}/{0}-podvolumebackups.json.gz", backup);
}
std::string ResourcesRecordKey(std::string_view backup) {
  return fmt::format("backups/{0}/{0}-fsb-resources.json.gz", backup);
}

Status WriteBackupRecord(repo::ObjectStore& store, std::string_view backup,
                         const kube::Object& obj) {
  const std::string key = BackupRecordKey(backup);
  const std::string text = obj.dump(2);
  return store.Put(key, AsBytes(text)).WithContext("write " + key);
}

Status WritePodVolumeBackupsRecord(repo::ObjectStore& store, std::string_view backup,
                                   const std::vector<kube::Object>& pvbs) {
  return WriteJsonArray(store, PodVolumeBackupsRecordKey(backup), pvbs);
}

Status WriteResourcesRecord(repo::ObjectStore& store, std::string_view backup,
                            const std::vector<kube::Object>& resources) {
  return WriteJsonArray(store, ResourcesRecordKey(backup), resources);
}

Result<kube::Object> ReadBackupRecord(repo::ObjectStore& store, std::string_view backup) {
  const std::string key = BackupRecordKey(backup);
  Result<Bytes> raw = store.Get(key);
  if (!raw.ok()) return raw.status().WithContext("read " + key);
  kube::Object o = kube::Object::parse(AsString(*raw), nullptr, false);
  if (o.is_discarded() || !o.is_object()) {
    return Status::Corruption(fmt::format("{}: not a JSON object", key));
  }
  return o;
}

Result<std::vector<kube::Object>> ReadPodVolumeBackupsRecord(repo::ObjectStore& store,
                                                             std::string_view backup) {
  return ReadJsonArray(store, PodVolumeBackupsRecordKey(backup));
}

Result<std::vector<kube::Object>> ReadResourcesRecord(repo::ObjectStore& store,
                                                      std::string_view backup) {
  return ReadJsonArray(store, ResourcesRecordKey(backup));
}

}  // namespace fsb::coordinator
